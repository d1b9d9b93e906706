"""The results one ListenStreamByWorker subscriber has not read yet, bounded in count and bytes.

Why: results are published as jobs finish, whatever the subscriber's pace. A subscriber that
stops reading (its HTTP/2 window full) used to buffer up to 10 000 results of up to
JOB_OUTPUT_MAX_BYTES each: gigabytes per slow client. Now a subscriber that falls more than
LISTEN_STREAM_MAX_BUFFERED results or LISTEN_STREAM_MAX_BUFFERED_BYTES output bytes behind is cut
off: what it buffered is dropped at once (the memory is the point) and its stream ends with
ResourceExhausted naming the limit, which the front turns into RESOURCE_EXHAUSTED. Not silently:
a client must know it missed results (it can read them back with FindList if they are stored).

A result is always accepted into an empty buffer, whatever its size, so one large result never
cuts off a subscriber that keeps up.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import trio

from jobworkerp.errors import ResourceExhausted
from jobworkerp.proto.jobworkerp import data

RESULT_OVERHEAD = 256  # bytes counted per result besides its output items (ids, times, args are small)


@dataclass(frozen=True)
class StreamBounds:
    """How far behind one subscriber may fall (LISTEN_STREAM_MAX_BUFFERED, ..._BYTES)."""

    max_results: int = 1000
    max_bytes: int = 64 * 1024 * 1024


def result_size(result: data.JobResult) -> int:
    """What holding `result` costs, near enough: its output and args, plus a fixed overhead."""
    rd = result.data
    items: list[bytes] = rd.output.items if rd.output is not None else []
    size: int = len(rd.args) + RESULT_OVERHEAD
    for item in items:
        size += len(item)
    return size


class WorkerResultStream:
    """One subscriber's buffer: the bus `offer`s results, the subscriber iterates.

    Iteration ends (StopAsyncIteration) once the bus `close`s it, and raises ResourceExhausted
    once it overflowed.
    """

    def __init__(self, worker_id: int, bounds: StreamBounds) -> None:
        self._worker_id = worker_id
        self._bounds = bounds
        self._items: deque[tuple[data.JobResult, int]] = deque()
        self._bytes = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self.overflow: str | None = None  # why it was cut off

    def offer(self, result: data.JobResult) -> bool:
        """Buffer one result; False when this subscriber is (now) cut off or closed."""
        if self._closed or self.overflow is not None:
            return False
        size = result_size(result)
        bounds = self._bounds
        if self._items and (len(self._items) >= bounds.max_results or self._bytes + size > bounds.max_bytes):
            self.overflow = (
                f"this ListenStreamByWorker subscriber fell too far behind worker {self._worker_id}'s results "
                f"({len(self._items)} results, {self._bytes} bytes unread; limits LISTEN_STREAM_MAX_BUFFERED="
                f"{bounds.max_results}, LISTEN_STREAM_MAX_BUFFERED_BYTES={bounds.max_bytes}); later results "
                f"were not delivered: read faster, and read missed stored results with FindList")
            self._items.clear()
            self._bytes = 0
            self._lot.unpark_all()
            return False
        self._items.append((result, size))
        self._bytes += size
        self._lot.unpark_all()
        return True

    def close(self) -> None:
        """No more results: iteration ends once the buffer is read."""
        self._closed = True
        self._lot.unpark_all()

    def receive_nowait(self) -> data.JobResult:
        """The next buffered result; trio.WouldBlock if none yet, trio.EndOfChannel once closed."""
        if self.overflow is not None:
            raise ResourceExhausted(self.overflow)
        if self._items:
            return self._pop()
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> data.JobResult:
        """The next result, waiting for one (a cancel never loses a result taken off the buffer)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                result = self.receive_nowait()
            except trio.WouldBlock:
                await self._lot.park()
                continue
            await trio.lowlevel.cancel_shielded_checkpoint()
            return result

    async def receive_batch(self, max_results: int = 64, max_bytes: int = 1 << 20) -> list[data.JobResult]:
        """The next result, waiting for one, and those buffered behind it, up to `max_results`
        or `max_bytes` of them (at least one, whatever its size); trio.EndOfChannel once closed
        and read, ResourceExhausted once cut off.

        Why: the front hands results to asyncio one bridge hop per call; results come in bursts
        under load, and a hop per burst is a fraction of a hop per result. The caps keep what
        leaves the bounded buffer at once small beside its own bounds."""
        batch = [await self.receive()]
        taken = result_size(batch[0])
        while len(batch) < max_results and self._items and self.overflow is None:
            size = self._items[0][1]
            if taken + size > max_bytes:
                break
            taken += size
            batch.append(self._pop())
        return batch

    def _pop(self) -> data.JobResult:
        result, size = self._items.popleft()
        self._bytes -= size
        return result

    def __aiter__(self) -> WorkerResultStream:
        return self

    async def __anext__(self) -> data.JobResult:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
