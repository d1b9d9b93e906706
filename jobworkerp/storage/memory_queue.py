"""In-process job queues for Standalone mode: one set of priority deques per channel.

Pop is O(1): removed jobs are dropped lazily (their id leaves `_queued`, and pop skips
entries whose id is gone), so JobService.Delete never scans a deque.

A queued job is kept as a flat tuple of plain values (`_Packed`), not as its protobuf objects:
the garbage collector stops tracking such tuples, so 20 000 queued jobs are not 100 000 objects
that every full collection walks (which stalled the event loop 30-200 ms at a time under
bench/overload.py). Packing and unpacking cost a few microseconds; a protobuf round trip would
cost about 100.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import trio

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.ext import JobExtras
from jobworkerp.storage.queue import PoisonHandler, Ticket

# Pop order: HIGH, MEDIUM, LOW.
_PRIORITIES = (data.Priority.HIGH, data.Priority.MEDIUM, data.Priority.LOW)


# (job id, worker id, args, uniq_key, enqueue_time, grabbed_until_time, run_after_time, retried,
#  priority, timeout, backed, queue_type, redelivered, extras — never changed once made, so kept
#  by reference)
_Packed = tuple[int, "int | None", bytes, "str | None", int, "int | None", int, int, int, int, bool, int, bool,
                "JobExtras | None"]


_NO_DATA = data.JobData()


def _pack(ticket: Ticket) -> _Packed:
    # `is not None` tests, not a message's truth value: betterproto2's `__bool__` compares every
    # field with its default (a few microseconds each, ~3 % of the server's CPU at 1 600 jobs/s).
    # A worker id of 0 is packed as absent, as its truth value did.
    job = ticket.job
    d = job.data if job.data is not None else _NO_DATA
    worker_id = d.worker_id.value if d.worker_id is not None else 0
    return (job.id.value if job.id is not None else 0, worker_id or None, d.args, d.uniq_key,
            d.enqueue_time, d.grabbed_until_time, d.run_after_time, d.retried, int(d.priority), d.timeout,
            ticket.backed, ticket.queue_type, ticket.redelivered, ticket.extras)


def _unpack(p: _Packed) -> Ticket:
    job_id, worker_id, args, uniq_key, enqueue_time, grabbed_until, run_after, retried, priority, timeout, \
        backed, queue_type, redelivered, extras = p
    return Ticket(data.Job(id=data.JobId(value=job_id), data=data.JobData(
        worker_id=None if worker_id is None else data.WorkerId(value=worker_id), args=args, uniq_key=uniq_key,
        enqueue_time=enqueue_time, grabbed_until_time=grabbed_until, run_after_time=run_after, retried=retried,
        priority=data.Priority(priority), timeout=timeout)),
        backed=backed, queue_type=queue_type, redelivered=redelivered, extras=extras)


class _Channel:
    def __init__(self) -> None:
        self.deques: dict[int, deque[_Packed]] = {int(p): deque() for p in _PRIORITIES}
        self.size = 0  # deque entries, counting removed ones not yet skipped by a pop
        self.live = 0  # jobs really queued here: what length() reports, kept so it is O(1)
        self.nonempty = trio.Event()


class MemoryJobQueue:
    """Strict-priority FIFO queues keyed by channel name; waiters are woken on push."""

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}
        self._queued: dict[int, tuple[str, _Packed]] = {}  # job id -> (channel, job), for remove()
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
        packed = _pack(ticket)
        dq = ch.deques.get(packed[8], ch.deques[int(data.Priority.MEDIUM)])
        if front:
            dq.appendleft(packed)
        else:
            dq.append(packed)
        ch.size += 1
        self._forget(packed[0])  # pushed again while queued: the older copy no longer counts
        self._queued[packed[0]] = (channel, packed)
        ch.live += 1
        ch.nonempty.set()

    def _pop_nowait(self, channel: str) -> Ticket | None:
        ch = self._channel(channel)
        while ch.size:
            for prio in _PRIORITIES:
                dq = ch.deques[int(prio)]
                if dq:
                    packed = dq.popleft()
                    ch.size -= 1
                    entry = self._queued.get(packed[0])
                    if entry is None or entry[1] is not packed:
                        break  # removed (or pushed again) while queued: skip it, look again from HIGH
                    del self._queued[packed[0]]
                    ch.live -= 1
                    ticket = _unpack(packed)
                    self._in_flight[ticket.job_id] = (channel, ticket)
                    return ticket
        ch.nonempty = trio.Event()
        return None

    async def try_pop(self, channel: str) -> Ticket | None:
        return self._pop_nowait(channel)

    async def pop(self, channel: str, *, found_empty: bool = False) -> Ticket:
        while True:
            ticket = self._pop_nowait(channel)
            if ticket is not None:
                return ticket
            await self._channel(channel).nonempty.wait()

    async def remove(self, job_id: int) -> Ticket | None:
        packed = self._forget(job_id)
        return None if packed is None else _unpack(packed)

    def _forget(self, job_id: int) -> _Packed | None:
        """Take a queued job out of the count; its deque entry is skipped by a later pop."""
        entry = self._queued.pop(job_id, None)
        if entry is None:
            return None
        self._channels[entry[0]].live -= 1
        return entry[1]

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
        return None if entry is None else _unpack(entry[1])

    async def length(self, channel: str) -> int:
        ch = self._channels.get(channel)
        return 0 if ch is None else ch.live

    async def lengths_by_priority(self, channels: Iterable[str]) -> dict[tuple[str, int], int]:
        """Counted over the queued jobs at each call (no per-priority count kept on the job path,
        which would cost every push and pop for the sake of an occasional scrape)."""
        counts = {(channel, int(p)): 0 for channel in channels for p in _PRIORITIES}
        medium = int(data.Priority.MEDIUM)
        for channel, packed in self._queued.values():
            key = (channel, packed[8])
            if key in counts:
                counts[key] += 1
            elif (channel, medium) in counts:  # an unknown priority waits (and pops) as MEDIUM
                counts[channel, medium] += 1
        return counts
