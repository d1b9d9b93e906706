"""The last storage step of a job's life, as one atomic step per storage mode.

When a job ends (finished, cancelled, dropped with a result), four things must change together:
its status entry goes, its uniq_key is freed, its queue entry is acknowledged (if this process
popped it) and its result reaches whoever waits for it. Done as separate calls, a crash or an
outage between two of them leaves half a job: a status with nothing behind it, a uniq_key that
blocks new jobs forever, or a result nobody hears of. `JobSettler.settle` does all of them at
once: in memory without a checkpoint in between, in Redis as one Lua script.
"""

from __future__ import annotations

from typing import Protocol

from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.job_status import MemoryJobStatusStore
from jobworkerp.storage.memory_queue import MemoryJobQueue
from jobworkerp.storage.pubsub import MemoryResultBus
from jobworkerp.storage.uniq_keys import MemoryUniqKeyGuard


class JobSettler(Protocol):
    async def settle(self, job_id: int, result: data.JobResult | None, *, to_worker: bool, ack: bool) -> None:
        """Atomically: drop the job's status and uniq_key; when `ack`, acknowledge this process's
        queue entry of it; publish `result` (if any) to the job's waiters, and to its worker's
        streams when `to_worker`."""

    async def settle_orphan(self, job_id: int, result: data.JobResult, *, to_worker: bool) -> bool:
        """`settle` (without an ack) only if the job still has a status, awaited: True when this
        call settled it, so of several processes sweeping orphans exactly one ends each."""


class MemoryJobSettler:
    """Standalone: the in-process stores change with no checkpoint in between, so no other trio
    task can observe the job half settled."""

    def __init__(self, status: MemoryJobStatusStore, uniq_keys: MemoryUniqKeyGuard, queue: MemoryJobQueue,
                 bus: MemoryResultBus) -> None:
        self._status = status
        self._uniq_keys = uniq_keys
        self._queue = queue
        self._bus = bus

    async def settle(self, job_id: int, result: data.JobResult | None, *, to_worker: bool, ack: bool) -> None:
        self._status.delete_nowait(job_id)
        self._uniq_keys.release_nowait(job_id)
        if ack:
            self._queue.ack_nowait(job_id)
        if result is not None:
            self._bus.publish_nowait(result, to_job=True, to_worker=to_worker)

    async def settle_orphan(self, job_id: int, result: data.JobResult, *, to_worker: bool) -> bool:
        if await self._status.get(job_id) is None:
            return False
        await self.settle(job_id, result, to_worker=to_worker, ack=False)
        return True
