"""A plugin that kills the process importing it (a native crash at import)."""

import os

os._exit(9)
