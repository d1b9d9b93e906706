"""Where each live job is (PENDING / RUNNING); entries vanish when a job finishes.

Standalone keeps the map in memory; Scalable keeps it in a Redis hash.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from jobworkerp.proto.jobworkerp import data

Confirm = Callable[[], Awaitable[object]]  # waits until a write is stored; raises if it failed


class JobStatusStore(Protocol):
    async def set(self, job_id: int, status: data.JobStatus, *, confirm: bool = False) -> None:
        """Record the status. Drivers may send it without waiting for the write (it is
        informational while a job is queued or runs); `confirm` waits until it is stored, for
        the status that makes a new job visible before its enqueue is answered."""

    async def set_ahead(self, job_id: int, status: data.JobStatus) -> Confirm | None:
        """Start a confirmed write that lands before the caller's next storage command, and
        return its confirmation, to call and await after that command (it raises if the write
        failed); None when the driver cannot order writes this way (then `set(confirm=True)`).
        So a new job's status shares the round trip of the push that follows it, instead of
        costing one of its own before the job can be queued."""

    async def get(self, job_id: int) -> data.JobStatus | None: ...

    async def delete(self, job_id: int) -> None: ...

    async def all(self) -> list[tuple[int, data.JobStatus]]: ...


class MemoryJobStatusStore:
    """A dict; the async methods keep the driver interface uniform."""

    def __init__(self) -> None:
        self._status: dict[int, data.JobStatus] = {}

    async def set(self, job_id: int, status: data.JobStatus, *, confirm: bool = False) -> None:
        self._status[job_id] = status

    async def set_ahead(self, job_id: int, status: data.JobStatus) -> Confirm | None:
        return None  # a dict write costs nothing to wait for

    async def get(self, job_id: int) -> data.JobStatus | None:
        return self._status.get(job_id)

    async def delete(self, job_id: int) -> None:
        self.delete_nowait(job_id)

    def delete_nowait(self, job_id: int) -> None:
        self._status.pop(job_id, None)

    async def all(self) -> list[tuple[int, data.JobStatus]]:
        return sorted(self._status.items())
