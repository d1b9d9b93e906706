"""JobRestoreService (Scalable): re-queue WITH_BACKUP jobs whose queue entry was lost.

A backed-up instant job has an RDB row with run_after_time 0. It is lost — its queue entry went,
e.g. Redis was flushed — when nothing holds its id (no queue of any channel, no worker process's
in-flight record), its row is not claimed, and it is not being placed right now; then it is pushed
again. `include_grabbed` also takes claimed rows and jobs that may be in placement: for an
operator who knows the claiming process is gone, at the risk of running a job twice.
Standalone re-queues such jobs by itself at start-up, so there it is a no-op.

Restores may run at the same time (two fronts, a Restore and workers restoring at start-up), and
a worker may pop what one of them pushed at once: each job is claimed on its row before it is
pushed, so of several restores working from the same list exactly one queues it
(tests/chaos/test_restore.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from jobworkerp.clock import now_ms
from jobworkerp.config import Config
from jobworkerp.lifecycle.transitions import JobLifecycle
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage import Storage
from jobworkerp.usecase.paging import page_limit
from jobworkerp.usecase.workers import Workers

log = logging.getLogger(__name__)

PAGE = 2000


class Restorer:
    def __init__(self, storage: Storage, workers: Workers, lifecycle: JobLifecycle, config: Config) -> None:
        self._storage = storage
        self._workers = workers
        self._lifecycle = lifecycle
        self._claim_lease_ms = config.claim_lease_ms

    async def candidates(self, include_grabbed: bool, limit: int | None) -> list[data.Job]:
        """The lost jobs. Asked per job id, not per channel: a front knows only its own
        channels, and a job queued on another one is not lost."""
        if not self._storage.scalable:
            return []
        found: list[data.Job] = []
        async for page in self._backup_rows(include_grabbed):
            held = await self._storage.queue.held(job.id.value for job in page)
            unheld = [job for job in page if job.id.value not in held]
            if unheld and not include_grabbed:
                # Read after the rows: an Enqueue whose row is listed has written its status by now.
                statuses = {job_id for job_id, _ in await self._storage.status.all()}
                now = now_ms()
                unheld = [job for job in unheld if not self._maybe_placing(job, job.id.value in statuses, now)]
            found.extend(unheld)
            if limit is not None and len(found) >= limit:
                return found[:limit]
        return found

    async def list_candidates(self, include_grabbed: bool, limit: int | None) -> list[data.Job]:
        """FindAll: the candidates, one page of them (`paging.py`); Restore itself takes all."""
        return await self.candidates(include_grabbed, page_limit(limit))

    async def restore(self, include_grabbed: bool, limit: int | None) -> int:
        """Push the candidates back to their channel queues; returns how many."""
        restored = 0
        for job in await self.candidates(include_grabbed, limit):
            worker = await self._workers.get(job.data.worker_id.value)
            if worker is None or worker.data.periodic_interval or worker.data.response_type == data.ResponseType.DIRECT:
                continue
            if await self._restore_one(job, worker, include_grabbed):
                restored += 1
        return restored

    async def _backup_rows(self, include_grabbed: bool) -> AsyncIterator[list[data.Job]]:
        """Pages of rows that back a queued job (run_after_time 0), leaving out claimed ones
        unless `include_grabbed`: a claimed row's job is being run (or was just restored)."""
        now = now_ms()
        before: int | None = None
        # By id, not OFFSET: jobs ending while we page delete rows, and an offset would then
        # skip as many rows as were deleted before it.
        while page := await self._storage.repo.list_jobs(PAGE, before_id=before):
            before = page[-1].id.value
            yield [job for job in page if job.data.run_after_time == 0
                   and (include_grabbed or (job.data.grabbed_until_time or 0) <= now)]

    def _maybe_placing(self, job: data.Job, has_status: bool, now: int) -> bool:
        """An Enqueue writes the status, then the row, then pushes: a listed row with a status
        and nothing holding it may be an Enqueue about to push. One that has stalled for longer
        than a claim lease is taken as lost, as a stalled claim would be (README "Guarantees");
        so is a status without a queue entry left behind when Redis lost only part of its data,
        or by a restore whose push failed."""
        return has_status and job.data.enqueue_time > now - self._claim_lease_ms

    async def _restore_one(self, job: data.Job, worker: data.Worker, include_grabbed: bool) -> bool:
        """Queue one lost job again, unless someone else got to it since the list was read.

        The row is claimed first, compared with the lease read in the list: of restores racing
        from the same list exactly one wins. Without it, a restore that read the list before
        another pushed a job pushed it again after a worker had popped it — the second copy
        took the row over from the first and the job ran twice (tests/chaos/test_restore.py).
        A restore that reads the row later sees it claimed and leaves it; a popper takes the
        claim over. The status is looked at again just before the claim (the list may be
        seconds old): a claim landing between a popper's read of the row and its own claim
        makes the popper let the job go, so no claim is tried on a job an Enqueue may be
        placing. After the claim the queue is asked once more, and a job found there is left to
        whoever queued it (its row stays claimed: a popper takes that over)."""
        storage, job_id = self._storage, job.id.value
        if not include_grabbed and self._maybe_placing(job, await storage.status.get(job_id) is not None, now_ms()):
            return False
        lease = now_ms() + self._claim_lease_ms
        if not await storage.repo.claim_job(job_id, job.data.grabbed_until_time or 0, lease, run_after_time=0):
            return False  # another restore, a Delete or a popper has it; or the row is gone
        if await storage.queue.held([job_id]):
            return False
        await self._take_uniq_key(job)
        await self._lifecycle.restore(job, worker)
        return True

    async def _take_uniq_key(self, job: data.Job) -> None:
        """The job's uniq_key went with the rest of Redis: take it again (as Standalone's
        start-up recovery does, lifecycle/recovery.py) so no duplicate is accepted while the
        restored job waits. A key taken meanwhile by a new job stays with that job."""
        key = job.data.uniq_key
        if key is None:
            return
        holder = await self._storage.uniq_keys.acquire(key, job.id.value)
        if holder is not None and holder != job.id.value:
            log.warning("restored job %s: its uniq_key %r was taken meanwhile by job %s", job.id.value, key, holder)
