"""Where each live job is (PENDING / RUNNING); entries vanish when a job finishes.

Standalone keeps the map in memory; Scalable keeps it in a Redis hash.
"""

from __future__ import annotations

from typing import Protocol

from jobworkerp.proto.jobworkerp import data


class JobStatusStore(Protocol):
    async def set(self, job_id: int, status: data.JobStatus, *, confirm: bool = False) -> None:
        """Record the status. Drivers may send it without waiting for the write (it is
        informational while a job is queued or runs); `confirm` waits until it is stored, for
        the status that makes a new job visible before its enqueue is answered."""

    async def get(self, job_id: int) -> data.JobStatus | None: ...

    async def delete(self, job_id: int) -> None: ...

    async def all(self) -> list[tuple[int, data.JobStatus]]: ...


class MemoryJobStatusStore:
    """A dict; the async methods keep the driver interface uniform."""

    def __init__(self) -> None:
        self._status: dict[int, data.JobStatus] = {}

    async def set(self, job_id: int, status: data.JobStatus, *, confirm: bool = False) -> None:
        self._status[job_id] = status

    async def get(self, job_id: int) -> data.JobStatus | None:
        return self._status.get(job_id)

    async def delete(self, job_id: int) -> None:
        self.delete_nowait(job_id)

    def delete_nowait(self, job_id: int) -> None:
        self._status.pop(job_id, None)

    async def all(self) -> list[tuple[int, data.JobStatus]]:
        return sorted(self._status.items())
