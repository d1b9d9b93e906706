"""Group commit: many concurrent writers, one storage round trip.

The first writer to arrive becomes the leader and flushes everything queued (its own item and
whatever arrives while it writes) in batches; the others wait for the batch holding their item.
Under load this turns N thread hops / network round trips into one, while each caller still
returns only after its own item is durable (so a result is stored before it is announced).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class _Batch(Generic[T]):
    def __init__(self) -> None:
        self.items: list[T] = []
        self.done = trio.Event()
        self.error: BaseException | None = None


class GroupCommitWriter(Generic[T]):
    def __init__(self, write_many: Callable[[Sequence[T]], Awaitable[None]], max_batch: int = 1000) -> None:
        self._write_many = write_many
        self._max_batch = max_batch
        self._queue: deque[_Batch[T]] = deque()
        self._flushing = False

    async def write(self, item: T) -> None:
        if not self._queue or len(self._queue[-1].items) >= self._max_batch:
            self._queue.append(_Batch())
        batch = self._queue[-1]
        batch.items.append(item)
        if self._flushing:
            await batch.done.wait()
        else:
            self._flushing = True
            try:
                with trio.CancelScope(shield=True):  # followers depend on this flush finishing
                    await self._flush_all()
            finally:
                self._flushing = False
        if batch.error is not None:
            raise batch.error

    async def _flush_all(self) -> None:
        while self._queue:
            batch = self._queue.popleft()
            try:
                await self._write_many(batch.items)
            except Exception as e:  # every waiter of the batch sees the storage error
                batch.error = e
            batch.done.set()
