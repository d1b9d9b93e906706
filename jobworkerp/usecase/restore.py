"""JobRestoreService (Scalable): re-queue WITH_BACKUP jobs whose queue entry was lost.

A backed-up instant job has an RDB row with run_after_time 0. If its id is in no queue (and it
is not claimed, unless include_grabbed), the queue entry was lost — e.g. Redis was flushed — so
it is pushed again. Standalone re-queues such jobs by itself at start-up, so there it is a no-op.
"""

from __future__ import annotations

from jobworkerp.clock import now_ms
from jobworkerp.config import Config
from jobworkerp.lifecycle.transitions import JobLifecycle
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage import Storage
from jobworkerp.usecase.workers import Workers

PAGE = 2000


class Restorer:
    def __init__(self, storage: Storage, workers: Workers, lifecycle: JobLifecycle, config: Config) -> None:
        self._storage = storage
        self._workers = workers
        self._lifecycle = lifecycle
        self._channels = [c.name for c in config.all_channels()]

    async def candidates(self, include_grabbed: bool, limit: int | None) -> list[data.Job]:
        if not self._storage.scalable:
            return []
        queued = await self._storage.queue.queued_ids(self._channels)
        now = now_ms()
        found: list[data.Job] = []
        offset = 0
        while limit is None or len(found) < limit:
            page = await self._storage.repo.list_jobs(PAGE, offset)
            if not page:
                break
            offset += len(page)
            for job in page:
                lease = job.data.grabbed_until_time or 0
                if job.data.run_after_time != 0 or job.id.value in queued:
                    continue
                if not include_grabbed and lease > now:
                    continue
                found.append(job)
        return found if limit is None else found[:limit]

    async def restore(self, include_grabbed: bool, limit: int | None) -> int:
        """Push the candidates back to their channel queues; returns how many."""
        restored = 0
        for job in await self.candidates(include_grabbed, limit):
            worker = await self._workers.get(job.data.worker_id.value)
            if worker is None or worker.data.periodic_interval or worker.data.response_type == data.ResponseType.DIRECT:
                continue
            await self._lifecycle.restore(job, worker)
            restored += 1
        return restored
