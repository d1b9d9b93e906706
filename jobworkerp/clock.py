"""Epoch-millisecond time for the job path, read from trio's clock.

Everything that schedules (run_after_time waits, periodic runs, retry delays, leases) asks
`now_ms()`. It is wall time anchored once per trio run and advanced by `trio.current_time()`,
so (1) a wall-clock step never makes a schedule jump, and (2) tests that run under trio's
MockClock drive every schedule in virtual time.
"""

from __future__ import annotations

import time

import trio
import trio.lowlevel

_ANCHOR: trio.lowlevel.RunVar[tuple[float, float]] = trio.lowlevel.RunVar("jobworkerp_clock_anchor")


def now_ms() -> int:
    """Current epoch time in ms (inside a trio run; plain wall time outside one)."""
    try:
        trio_now = trio.current_time()
    except RuntimeError:
        return int(time.time() * 1000)
    try:
        wall_anchor, trio_anchor = _ANCHOR.get()
    except LookupError:
        wall_anchor, trio_anchor = time.time(), trio_now
        _ANCHOR.set((wall_anchor, trio_anchor))
    return int((wall_anchor + (trio_now - trio_anchor)) * 1000)


async def sleep_until_ms(epoch_ms: int) -> None:
    """Sleep until the given epoch time (returns at once when it has passed)."""
    delay_ms = epoch_ms - now_ms()
    if delay_ms > 0:
        await trio.sleep(delay_ms / 1000)
