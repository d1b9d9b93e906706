"""uniq_key guard: a key stays taken from enqueue until its job is finished or deleted.

Upstream only enforced uniq_key while a job sat in a queue or an RDB row; a duplicate could slip
in while the first one ran. Here the key is held for the job's whole life, including retries
and periodic re-runs (which keep the job id). Scalable mode keeps the same map in Redis.
"""

from __future__ import annotations

from typing import Protocol


class UniqKeyGuard(Protocol):
    async def acquire(self, key: str, job_id: int) -> int | None:
        """Take the key for job_id; returns None on success, else the id of the job holding it."""

    async def release(self, job_id: int) -> None:
        """Free the key job_id holds, if any."""

    async def holders(self) -> list[int]:
        """Every job id that holds a key."""


class MemoryUniqKeyGuard:
    def __init__(self) -> None:
        self._holder_of: dict[str, int] = {}
        self._key_of: dict[int, str] = {}

    async def acquire(self, key: str, job_id: int) -> int | None:
        holder = self._holder_of.setdefault(key, job_id)
        if holder != job_id:
            return holder
        self._key_of[job_id] = key
        return None

    async def release(self, job_id: int) -> None:
        self.release_nowait(job_id)

    async def holders(self) -> list[int]:
        return list(self._key_of)

    def release_nowait(self, job_id: int) -> None:
        key = self._key_of.pop(job_id, None)
        if key is not None:
            self._holder_of.pop(key, None)
