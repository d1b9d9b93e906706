"""In-process job queues for Standalone mode: one set of priority deques per channel.

Pop is O(1): removed jobs are dropped lazily (their id leaves `_queued`, and pop skips
entries whose id is gone), so JobService.Delete never scans a deque.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import trio

from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.queue import PoisonHandler, Ticket

# Pop order: HIGH, MEDIUM, LOW.
_PRIORITIES = (data.Priority.HIGH, data.Priority.MEDIUM, data.Priority.LOW)


class _Channel:
    def __init__(self) -> None:
        self.deques: dict[int, deque[Ticket]] = {int(p): deque() for p in _PRIORITIES}
        self.size = 0
        self.nonempty = trio.Event()


class MemoryJobQueue:
    """Strict-priority FIFO queues keyed by channel name; waiters are woken on push."""

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}
        self._queued: dict[int, tuple[str, Ticket]] = {}  # job id -> (channel, ticket), for remove()
        self._in_flight: dict[int, tuple[str, Ticket]] = {}  # popped, not yet acked or released

    def _channel(self, name: str) -> _Channel:
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = _Channel()
        return ch

    async def push(self, channel: str, ticket: Ticket, *, ack: bool = False) -> None:
        if ack:
            self._in_flight.pop(ticket.job_id, None)
        self._put(channel, ticket, front=False)

    def _put(self, channel: str, ticket: Ticket, *, front: bool) -> None:
        ch = self._channel(channel)
        dq = ch.deques.get(int(ticket.job.data.priority), ch.deques[int(data.Priority.MEDIUM)])
        if front:
            dq.appendleft(ticket)
        else:
            dq.append(ticket)
        ch.size += 1
        self._queued[ticket.job_id] = (channel, ticket)
        ch.nonempty.set()

    def _pop_nowait(self, channel: str) -> Ticket | None:
        ch = self._channel(channel)
        while ch.size:
            for prio in _PRIORITIES:
                dq = ch.deques[int(prio)]
                if dq:
                    ticket = dq.popleft()
                    ch.size -= 1
                    entry = self._queued.get(ticket.job_id)
                    if entry is None or entry[1] is not ticket:
                        break  # removed (or pushed again) while queued: skip it, look again from HIGH
                    del self._queued[ticket.job_id]
                    self._in_flight[ticket.job_id] = (channel, ticket)
                    return ticket
        ch.nonempty = trio.Event()
        return None

    async def try_pop(self, channel: str) -> Ticket | None:
        return self._pop_nowait(channel)

    async def pop(self, channel: str) -> Ticket:
        while True:
            ticket = self._pop_nowait(channel)
            if ticket is not None:
                return ticket
            await self._channel(channel).nonempty.wait()

    async def remove(self, job_id: int) -> Ticket | None:
        entry = self._queued.pop(job_id, None)
        return None if entry is None else entry[1]

    async def ack(self, job_id: int) -> None:
        self.ack_nowait(job_id)

    def ack_nowait(self, job_id: int) -> None:
        self._in_flight.pop(job_id, None)

    async def release(self, job_id: int) -> None:
        entry = self._in_flight.pop(job_id, None)
        if entry is not None and job_id not in self._queued:  # a newer copy (a retry) wins
            self._put(*entry, front=True)

    async def queued_ids(self, channels: Iterable[str]) -> set[int]:
        wanted = set(channels)
        queued = {job_id for job_id, (channel, _) in self._queued.items() if channel in wanted}
        return queued | {job_id for job_id, (channel, _) in self._in_flight.items() if channel in wanted}

    async def held(self, job_ids: Iterable[int]) -> set[int]:
        return {i for i in job_ids if i in self._queued or i in self._in_flight}

    async def retire(self) -> None:
        """Nothing is recorded outside this process."""

    async def drain_volatile(self) -> list[Ticket]:
        """Every queued job, in pop order per channel; the queue is empty afterwards."""
        drained: list[Ticket] = []
        for name in list(self._channels):
            while (ticket := self._pop_nowait(name)) is not None:
                self._in_flight.pop(ticket.job_id, None)
                drained.append(ticket)
        return drained

    async def run_maintenance(self, on_poison: PoisonHandler, *,
                              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def find(self, job_id: int) -> Ticket | None:
        entry = self._queued.get(job_id)
        return None if entry is None else entry[1]

    async def length(self, channel: str) -> int:
        ch = self._channels.get(channel)
        if ch is None:
            return 0
        return sum(1 for dq in ch.deques.values() for t in dq if self._queued.get(t.job_id, (None, None))[1] is t)
