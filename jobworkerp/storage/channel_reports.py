"""What each Scalable worker process reports of its channels (running jobs, runner hosts), for
the fronts, which have no workers of their own (ChannelInfoService, usecase/channel_info.py).

Standalone has no such store: its one process answers from what it has in hand.
"""

from __future__ import annotations

from typing import Protocol


class ChannelReports(Protocol):
    """One encoded report per live worker process, each valid until its publisher's deadline."""

    async def publish(self, report: bytes, valid_ms: int) -> None:
        """Replace this process's report; it counts as fresh for `valid_ms` from now."""
        ...

    async def withdraw(self) -> None:
        """Drop this process's report (a stopping worker), so fronts stop counting it at once."""
        ...

    async def fresh(self) -> list[bytes]:
        """The reports of every process whose last one is still valid (stale ones are dropped)."""
        ...
