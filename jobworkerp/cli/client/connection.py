"""Moved to `jobworkerp.client.connection` (shared by the Python client and the CLI).

Kept as an alias so code written against the old path (branches still in flight) keeps working;
new code imports `jobworkerp.client.connection`.
"""

from jobworkerp.client.connection import *  # noqa: F403
