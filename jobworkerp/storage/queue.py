"""The job queue interface: instant jobs waiting for a channel, popped in priority order.

Drivers: in-memory (Standalone) and Redis (Scalable). Both give strict priority (HIGH, then
MEDIUM, then LOW) and FIFO order within one priority.

Reliable fetch: a popped job stays recorded as in flight for this process until `ack`. The Redis
driver keeps that record in Redis with a heartbeat lease, so when a worker process dies its
in-flight jobs go back to their queue (at-least-once); a job that has already been in flight on
`max_crashes` dead workers is handed to `on_poison` instead of looping forever.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import trio

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.ext import JobExtras
from jobworkerp.wire import encode
from jobworkerp.wire_decode import decode

_BACKED = 0x01
_QUEUE_TYPE_SHIFT = 1
_QUEUE_TYPE_MASK = 0x3F  # queue types 0..63 in bits 1-6
_HAS_EXTRAS = 0x80


@dataclass(frozen=True, slots=True)
class Ticket:
    """A job as it waits in a queue, with what was decided about it when it was accepted.

    The decision travels with the job instead of being derived again from the worker's current
    definition when the job is popped: a worker update then affects only jobs accepted after it,
    and the executor knows whether a database row backs this job (so finishing it deletes the
    row) without a database read.
    """

    job: data.Job
    backed: bool = False  # a backup row (WITH_BACKUP) exists for this job
    queue_type: int = int(data.QueueType.NORMAL)  # the worker's queue type at enqueue
    # Popped again after the process that had it died (not stored with the job: the queue says
    # so when it hands the job out). Its run may have been re-placed, or even ended, elsewhere
    # before that death was noticed, so the executor checks before it runs such a copy.
    redelivered: bool = False
    # What the server keeps with the job beyond the v0.7 message (trace context, streaming
    # output asked for); None for most jobs, which then pay nothing for it.
    extras: JobExtras | None = None

    @property
    def job_id(self) -> int:
        return self.job.id.value

    def encode(self) -> bytes:
        """One header byte (backed flag, queue type, extras present), then — with extras — their
        length (one varint) and protobuf bytes, then the job's protobuf bytes. Without extras
        this is the encoding of earlier releases, so queues written by them still decode."""
        head = (self.queue_type & _QUEUE_TYPE_MASK) << _QUEUE_TYPE_SHIFT | int(self.backed)
        if self.extras is None:
            return bytes([head]) + encode(self.job)
        extra = encode(self.extras)
        return bytes([head | _HAS_EXTRAS]) + _varint(len(extra)) + extra + encode(self.job)

    @classmethod
    def decode(cls, raw: bytes) -> Ticket:
        head = raw[0]
        extras = None
        at = 1
        if head & _HAS_EXTRAS:
            size, at = _read_varint(raw, 1)
            extras = decode(JobExtras, raw[at:at + size])
            at += size
        return cls(decode(data.Job, raw[at:]), backed=bool(head & _BACKED),
                   queue_type=(head >> _QUEUE_TYPE_SHIFT) & _QUEUE_TYPE_MASK, extras=extras)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(raw: bytes, at: int) -> tuple[int, int]:
    """The varint at `at` and the offset after it."""
    value = shift = 0
    while True:
        byte = raw[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def encode_extras(extras: JobExtras | None) -> bytes:
    """Extras as a job row keeps them (empty: none)."""
    return b"" if extras is None else encode(extras)


def decode_extras(raw: bytes | None) -> JobExtras | None:
    return decode(JobExtras, raw) if raw else None


PoisonHandler = Callable[[Ticket, str], Awaitable[None]]  # (ticket, reason)


class JobQueue(Protocol):
    async def push(self, channel: str, ticket: Ticket, *, ack: bool = False) -> None:
        """Queue a job (uniq_key is checked before, by the UniqKeyGuard). `ack`: a re-run of a
        job this process popped — its previous run is acknowledged in the same step, so the
        acknowledgement can never hit the new copy (same id) once that is popped."""

    async def pop(self, channel: str, *, found_empty: bool = False) -> Ticket:
        """Wait for and take the next job of the channel (highest priority, oldest first);
        it stays in flight for this process until `ack` or `release`. Cancel-safe: a cancelled
        pop leaves no job in flight. A job that came back from a dead process is handed out
        `redelivered`. `found_empty`: the caller's `try_pop` just found nothing, so a driver
        whose look costs a round trip may wait for a push's wake-up before it looks again."""

    async def try_pop(self, channel: str) -> Ticket | None:
        """Take the next job of the channel if there is one, without waiting."""

    async def ack(self, job_id: int) -> None:
        """This process is done with a popped job (finished, re-queued or handed elsewhere)."""

    async def release(self, job_id: int) -> None:
        """Give a popped job back to the front of its queue, not counted as a crash (its run was
        interrupted before it could end, e.g. storage failed before the job started)."""

    async def remove(self, job_id: int) -> Ticket | None:
        """Drop a queued job (JobService.Delete); the ticket, or None when it is not queued."""

    async def find(self, job_id: int) -> Ticket | None:
        """A queued job (not one in flight), for JobService.Find: a queued job is visible."""

    async def length(self, channel: str) -> int:
        """How many jobs wait on the channel."""

    async def lengths_by_priority(self, channels: Iterable[str]) -> dict[tuple[str, int], int]:
        """How many jobs wait on each of these channels at each priority: (channel, `Priority`
        value) -> count, zeros included (an unknown priority counts as MEDIUM, as it pops). For
        the queue-depth metric: read when metrics are scraped, so the job path pays nothing."""

    async def queued_ids(self, channels: Iterable[str]) -> set[int]:
        """Ids of every job waiting (or in flight) on these channels (for JobRestoreService)."""

    async def held(self, job_ids: Iterable[int]) -> set[int]:
        """Which of these jobs are queued or in flight (on any live or not yet reaped process):
        the orphan sweep's question "does anything still hold this job?"."""

    async def retire(self) -> int | None:
        """Graceful exit: hand back anything still in flight here, without counting a crash
        (drivers that record in-flight jobs elsewhere return how many went back)."""

    async def drain_volatile(self) -> list[Ticket]:
        """Graceful exit: take out every queued job that would die with this process (all of an
        in-memory queue's), so the caller can keep them elsewhere; empty for a durable queue."""

    async def run_maintenance(self, on_poison: PoisonHandler, *,
                              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background upkeep until cancelled: heartbeat this process's lease and return the
        in-flight jobs of dead processes to their queues."""


@runtime_checkable
class BatchPop(Protocol):
    """What a queue whose every look is a round trip (Redis) offers beyond `JobQueue`."""

    async def try_pop_many(self, channel: str, most: int) -> tuple[list[Ticket], bool]:
        """`try_pop` of up to `most` jobs at once; and True when the look left the channel's
        queue empty, so the caller may wait for a push's wake-up instead of looking again."""

    async def pop_reporting(self, channel: str, *, found_empty: bool = False) -> tuple[Ticket, bool]:
        """`pop`, and whether it left the channel's queue empty (as `try_pop_many`)."""

