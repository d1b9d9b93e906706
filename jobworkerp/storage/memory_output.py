"""Standalone output streams: one bounded in-memory buffer per streamed job (`output_stream.py`).

The writer (the runner pool's reader task) appends entries to the job's buffer and wakes its
listeners; each listener reads the shared buffer at its own place (`Cursor`), so a listener that
falls behind costs no copy, and skips what was evicted meanwhile: past `max_chunks` or
`max_bytes` the oldest entries go. The final result is kept with the end marker for listeners
who come after the job's result was published and nothing else has it (a worker that stores no
results). Buffers are dropped `keep_s` after their end, looked for at most once a second when
streams are used (there is no background task in Standalone's storage).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.ext import JobOutputItem
from jobworkerp.storage.output_stream import UNENDED_KEEP_S, Cursor, Entry, OutputBounds

PRUNE_EVERY_S = 1.0


class _Buffer:
    """The kept entries of one job's stream; numbers are contiguous from the oldest kept on."""

    __slots__ = ("changed", "entries", "expires", "last", "listeners", "result", "size")

    def __init__(self) -> None:
        self.entries: deque[Entry] = deque()
        self.size = 0  # bytes of the kept chunks
        self.last = 0  # the number of the newest entry
        self.result: data.JobResult | None = None  # with the end marker
        self.changed = trio.Event()
        self.listeners = 0
        self.expires = trio.current_time() + UNENDED_KEEP_S

    @property
    def ended(self) -> bool:
        return bool(self.entries) and self.entries[-1][1] is None

    def add(self, chunk: bytes | None, bounds: OutputBounds) -> None:
        self.last += 1
        self.entries.append((self.last, chunk))
        if chunk is not None:
            self.size += len(chunk)
        entries = self.entries
        while len(entries) > 1 and (len(entries) > bounds.max_chunks or self.size > bounds.max_bytes):
            _, old = entries.popleft()
            if old is not None:
                self.size -= len(old)
        self.expires = trio.current_time() + (bounds.keep_s if chunk is None else UNENDED_KEEP_S)
        self.changed.set()
        self.changed = trio.Event()

    def since(self, seen: int) -> list[Entry]:
        """The kept entries numbered after `seen`."""
        entries = self.entries
        if not entries or self.last <= seen:
            return []
        start = max(0, seen + 1 - entries[0][0])
        return [entries[i] for i in range(start, len(entries))]


class _Writer:
    __slots__ = ("_bounds", "_buffer", "_ended")

    def __init__(self, buffer: _Buffer, bounds: OutputBounds) -> None:
        self._buffer = buffer
        self._bounds = bounds
        self._ended = False

    def emit(self, chunk: bytes) -> None:
        if not self._ended:  # (nothing may follow the end marker)
            self._buffer.add(chunk, self._bounds)

    async def flush(self) -> None:
        return None  # in the buffer already

    async def end(self, result: data.JobResult) -> None:
        self._ended = True
        self._buffer.result = result
        self._buffer.add(None, self._bounds)


class _Feed:
    __slots__ = ("_buffer", "_cursor")

    def __init__(self, buffer: _Buffer) -> None:
        self._buffer = buffer
        self._cursor = Cursor()

    @property
    def ended(self) -> bool:
        return self._cursor.ended

    def take(self) -> list[JobOutputItem]:
        return self._cursor.items(self._buffer.since(self._cursor.seen))

    async def wait(self) -> None:
        if not self._cursor.ended and self._buffer.last <= self._cursor.seen:
            await self._buffer.changed.wait()

    async def rest(self) -> list[JobOutputItem]:
        return self.take()


class MemoryOutputStreams:
    def __init__(self, bounds: OutputBounds | None = None) -> None:
        self.bounds = bounds or OutputBounds()
        self._buffers: dict[int, _Buffer] = {}
        self._pruned_at = -PRUNE_EVERY_S

    async def writer(self, job_id: int) -> _Writer:
        self._prune()
        buffer = self._buffers.get(job_id)
        if buffer is None or buffer.ended:
            buffer = self._buffers[job_id] = _Buffer()
        return _Writer(buffer, self.bounds)

    @asynccontextmanager
    async def follow(self, job_id: int) -> AsyncIterator[_Feed]:
        self._prune()
        buffer = self._buffers.get(job_id)
        if buffer is None:  # kept for the writer: the job has not run yet
            buffer = self._buffers[job_id] = _Buffer()
        buffer.listeners += 1
        try:
            yield _Feed(buffer)
        finally:
            buffer.listeners -= 1
            if not buffer.listeners and not buffer.entries and self._buffers.get(job_id) is buffer:
                del self._buffers[job_id]  # nothing was written: no need to keep it

    async def ended_result(self, job_id: int) -> data.JobResult | None:
        buffer = self._buffers.get(job_id)
        return None if buffer is None else buffer.result

    def _prune(self) -> None:
        """Drop the buffers past their time that nobody reads (at most once a second)."""
        now = trio.current_time()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        for job_id in [j for j, b in self._buffers.items() if b.expires < now and not b.listeners]:
            del self._buffers[job_id]
