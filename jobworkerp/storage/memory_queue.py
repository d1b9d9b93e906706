"""In-process job queues for Standalone mode: one set of priority deques per channel.

Pop is O(1): removed jobs are dropped lazily (their id leaves `_queued`, and pop skips
entries whose id is gone), so JobService.Delete never scans a deque.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import trio

from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.queue import PoisonHandler

# Pop order: HIGH, MEDIUM, LOW.
_PRIORITIES = (data.Priority.HIGH, data.Priority.MEDIUM, data.Priority.LOW)


class _Channel:
    def __init__(self) -> None:
        self.deques: dict[int, deque[data.Job]] = {int(p): deque() for p in _PRIORITIES}
        self.size = 0
        self.nonempty = trio.Event()


class MemoryJobQueue:
    """Strict-priority FIFO queues keyed by channel name; waiters are woken on push."""

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}
        self._queued: dict[int, tuple[str, data.Job]] = {}  # job id -> (channel, job), for remove()
        self._in_flight: dict[int, str] = {}  # popped, not yet acked: job id -> channel

    def _channel(self, name: str) -> _Channel:
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = _Channel()
        return ch

    async def push(self, channel: str, job: data.Job) -> None:
        self.push_nowait(channel, job)

    def push_nowait(self, channel: str, job: data.Job) -> None:
        ch = self._channel(channel)
        prio = int(job.data.priority)
        ch.deques.get(prio, ch.deques[int(data.Priority.MEDIUM)]).append(job)
        ch.size += 1
        self._queued[job.id.value] = (channel, job)
        ch.nonempty.set()

    def pop_nowait(self, channel: str) -> data.Job | None:
        ch = self._channel(channel)
        while ch.size:
            for prio in _PRIORITIES:
                dq = ch.deques[int(prio)]
                if dq:
                    job = dq.popleft()
                    ch.size -= 1
                    if self._queued.pop(job.id.value, None) is None:
                        break  # removed while queued: skip it, look again from HIGH
                    self._in_flight[job.id.value] = channel
                    return job
        ch.nonempty = trio.Event()
        return None

    async def pop(self, channel: str) -> data.Job:
        while True:
            job = self.pop_nowait(channel)
            if job is not None:
                return job
            await self._channel(channel).nonempty.wait()

    async def remove(self, job_id: int) -> data.Job | None:
        entry = self._queued.pop(job_id, None)
        return None if entry is None else entry[1]

    async def ack(self, job_id: int) -> None:
        self._in_flight.pop(job_id, None)

    async def queued_ids(self, channels: Iterable[str]) -> set[int]:
        wanted = set(channels)
        queued = {job_id for job_id, (channel, _) in self._queued.items() if channel in wanted}
        return queued | {job_id for job_id, channel in self._in_flight.items() if channel in wanted}

    async def retire(self) -> None:
        """Nothing is recorded outside this process."""

    async def run_maintenance(self, on_poison: PoisonHandler, *,
                              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def length(self, channel: str) -> int:
        ch = self._channels.get(channel)
        if ch is None:
            return 0
        return sum(1 for dq in ch.deques.values() for job in dq if job.id.value in self._queued)
