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
from typing import Protocol

import trio

from jobworkerp.proto.jobworkerp import data

PoisonHandler = Callable[[data.Job, str], Awaitable[None]]  # (job, reason)


class JobQueue(Protocol):
    async def push(self, channel: str, job: data.Job) -> None:
        """Queue a job (uniq_key is checked before, by the UniqKeyGuard)."""

    async def pop(self, channel: str) -> data.Job:
        """Wait for and take the next job of the channel (highest priority, oldest first);
        it stays in flight for this process until `ack`."""

    async def ack(self, job_id: int) -> None:
        """This process is done with a popped job (finished, re-queued or handed elsewhere)."""

    async def remove(self, job_id: int) -> data.Job | None:
        """Drop a queued job (JobService.Delete); the job, or None when it is not queued."""

    async def length(self, channel: str) -> int:
        """How many jobs wait on the channel."""

    async def queued_ids(self, channels: Iterable[str]) -> set[int]:
        """Ids of every job waiting (or in flight) on these channels (for JobRestoreService)."""

    async def retire(self) -> None:
        """Graceful exit: hand back anything still in flight here, without counting a crash."""

    async def run_maintenance(self, on_poison: PoisonHandler, *,
                              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background upkeep until cancelled: heartbeat this process's lease and return the
        in-flight jobs of dead processes to their queues."""
