"""JOB_QUEUE_MAX_LENGTH: a channel whose queue is full refuses new jobs with RESOURCE_EXHAUSTED.

Beyond upstream. Without a limit, clients that enqueue faster than a channel runs grow the queue
(Redis memory, or this process's memory in Standalone) until something falls over; a refusal
the client can see and back off from is the better failure.

The limit is approximate on purpose: reading a queue's length on every enqueue would add a Redis
round trip to the hot path, so a channel's length is read at most every REFRESH_S and the jobs
this process queued since are added to it. Other processes' enqueues within that window can
overshoot the limit by what they accept in it.

One read at a time per channel: the enqueues that find the count stale while a read is under way
wait for that read instead of starting their own. Without it, every enqueue in flight when the
count went stale read the length too — under 50 callers, a ZCARD round trip for four jobs in ten
on a Scalable front, instead of ten a second.
"""

from __future__ import annotations

import trio

from jobworkerp.errors import ResourceExhausted
from jobworkerp.storage.queue import JobQueue

REFRESH_S = 0.1


class QueueLimit:
    def __init__(self, queue: JobQueue, max_length: int) -> None:
        self._queue = queue
        self._max = max_length
        self._known: dict[str, tuple[int, float]] = {}  # channel -> (length, read at)
        self._reading: dict[str, trio.Event] = {}  # channel -> set when its read under way ends

    async def admit(self, channel: str) -> None:
        """Count one more job for `channel`, or refuse it when the queue is full."""
        if not self._max:
            return
        now = trio.current_time()
        length, read_at = self._known.get(channel, (0, -REFRESH_S))
        if now - read_at >= REFRESH_S:
            await self._refresh(channel, now)
            # The read's count (or, if it failed, the one before), plus the jobs admitted since.
            length, read_at = self._known.get(channel, (0, -REFRESH_S))
        if length >= self._max:
            self._known[channel] = (length, read_at)
            raise ResourceExhausted(f"channel {channel!r} has {length} queued jobs, its limit "
                                    f"(JOB_QUEUE_MAX_LENGTH={self._max}); try again later")
        self._known[channel] = (length + 1, read_at)

    async def _refresh(self, channel: str, now: float) -> None:
        """Read the channel's length into `_known`, or wait for the read already under way. A
        failed read raises for the enqueue that made it; those waiting go on with the old count."""
        under_way = self._reading.get(channel)
        if under_way is not None:
            await under_way.wait()
            return
        self._reading[channel] = done = trio.Event()
        try:
            self._known[channel] = (await self._queue.length(channel), now)
        finally:
            del self._reading[channel]
            done.set()
