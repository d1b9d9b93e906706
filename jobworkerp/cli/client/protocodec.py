"""Moved to `jobworkerp.client.protocodec` (the Python client's codec, which the CLI now imports).

Kept as an alias so code written against the old path (branches still in flight) keeps working;
new code imports `jobworkerp.client.protocodec`.
"""

from jobworkerp.client.protocodec import *  # noqa: F403
