"""A channel's concurrency as slots that only work can keep.

A slot is held by a running job. A fetcher (the queue pull loop, the due-job fetcher) takes a
slot before it fetches, so a job is never popped before it can run — but while it merely waits
for work (an empty queue) it holds the slot as *idle*: another fetcher that needs a slot and
finds none free pre-empts it (the idle wait is cancelled and its slot handed over). So an idle
loop never starves the other source, at any concurrency including 1, and trio's FIFO semaphore
makes fetchers that both have work take turns.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio


class Slots:
    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"a channel needs at least one slot, got {total}")
        self.total = total
        self._free = trio.Semaphore(total)
        self._idle: set[trio.CancelScope] = set()

    async def acquire(self) -> None:
        """Wait for a slot (first come, first served), pre-empting idle holders if none is free."""
        if self._free.value == 0:
            for scope in self._idle:
                scope.cancel()
        await self._free.acquire()

    def take_free(self, wanted: int) -> int:
        """Take up to `wanted` more slots that are free right now; returns how many."""
        taken = 0
        while taken < wanted:
            try:
                self._free.acquire_nowait()
            except trio.WouldBlock:
                break
            taken += 1
        return taken

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self._free.release()

    @contextmanager
    def idle(self) -> Iterator[trio.CancelScope]:
        """Mark the caller's held slot as idle for the block: the block is cancelled when another
        fetcher needs the slot — one that asks later, or one already waiting now (then at once:
        the slot went to the wrong fetcher) — so check `cancelled_caught`, then give it back."""
        scope = trio.CancelScope()
        if self._free.statistics().tasks_waiting:
            scope.cancel()
        self._idle.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._idle.discard(scope)
