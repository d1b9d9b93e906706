"""A plugin whose import never returns: discovery gives up on it after its timeout."""

import threading

threading.Event().wait()
