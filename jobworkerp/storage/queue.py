"""The job queue interface: instant jobs waiting for a channel, popped in priority order.

Drivers: in-memory (Standalone) and Redis lists (Scalable). Both give strict priority
(HIGH, then MEDIUM, then LOW) and FIFO order within one priority.
"""

from __future__ import annotations

from typing import Protocol

from jobworkerp.proto.jobworkerp import data


class JobQueue(Protocol):
    async def push(self, channel: str, job: data.Job) -> None:
        """Queue a job (uniq_key is checked before, by the UniqKeyGuard)."""

    async def pop(self, channel: str) -> data.Job:
        """Wait for and take the next job of the channel (highest priority, oldest first)."""

    async def remove(self, job_id: int) -> data.Job | None:
        """Drop a queued job (JobService.Delete); the job, or None when it is not queued."""

    async def length(self, channel: str) -> int:
        """How many jobs wait on the channel."""
