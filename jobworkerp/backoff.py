"""Waiting out a storage outage in a loop.

A Redis or database that is restarting, unreachable or cut off (`errors.is_outage`) is not a
reason to crash a loop: the loops that fetch jobs or read pub/sub retry with exponential backoff,
logging the outage once when it starts and once when it ends. Anything else is a bug and keeps its
normal path (crash, supervisor restart).
"""

from __future__ import annotations

import logging

import trio

BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 2.0  # longest pause: a recovered Redis or database is noticed within this


class Backoff:
    """Exponential pauses between attempts while storage is out, for one loop."""

    def __init__(self, what: str, log: logging.Logger) -> None:
        self.what = what
        self.log = log
        self.delay = 0.0

    async def failed(self, error: BaseException) -> None:
        if not self.delay:
            self.log.warning("%s: storage unavailable (%s: %s); retrying with backoff", self.what,
                             type(error).__name__, error)
        self.delay = min(max(self.delay * 2, BACKOFF_START_S), BACKOFF_MAX_S)
        await trio.sleep(self.delay)

    def succeeded(self) -> None:
        if self.delay:
            self.log.warning("%s: storage is back", self.what)
            self.delay = 0.0
