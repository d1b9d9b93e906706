"""The orphan sweep (Scalable): end what a process left half done when it died between two steps.

A job's state lives in several stores (Redis status / uniq_key / queue, the RDB row and results),
and the lifecycle changes them in an order that makes every crash window safe to *see* — but a
few windows still leave something behind that no live process will ever touch again:

* a status with nothing holding the job — no queue entry, no in-flight record on any process,
  no row, not running here: e.g. a SIGKILL after an ending deleted the row but before the
  settle step reached Redis (the result is already stored), or in the middle of a Delete;
* a uniq_key whose holder has no status: a SIGKILL after the key was taken but before the job
  was placed (its enqueue never got an answer); likewise a DIRECT caller's reply route
  (storage/redis_bus.py) whose job never got a status, when its caller could not drop it;
* a WITH_BACKUP job stranded on its backup row: a SIGKILL after the row was written but before
  the job was pushed to its queue (the row says "instant", so no due-job fetcher claims it, and
  without a queue entry nothing pops it). It is queued again, as Restore would (soak seed 130266);
* a row of a worker that no longer exists: a worker Delete cut short (a stopping server) after
  the worker was deleted but before its waiting jobs were ended; the due-job fetchers only look
  at rows of existing workers. It is ended with FATAL_ERROR, as the Delete would have (seed 410793).

Each sweep looks for both; what is still orphaned a whole grace period later (far longer than
any step takes) is ended: a status through the settle step — with the job's stored final result
when there is one, else FATAL_ERROR saying why — and a uniq_key by releasing it. River's rescuer
and BullMQ's stalled-job checker do the same for their stores. The settle step is conditional
(`JobSettler.settle_orphan`), so sweeps of several processes end each orphan once.

Standalone needs none of this: its status, uniq keys and queues live in the process and vanish
with it, and restart recovery rebuilds them from the database.
"""

from __future__ import annotations

import logging

import trio

from jobworkerp.clock import now_ms
from jobworkerp.lifecycle.running import RunningJobs
from jobworkerp.lifecycle.transitions import JobLifecycle
from jobworkerp.proto.jobworkerp import data

log = logging.getLogger(__name__)

_FINAL_EXCLUDED = {int(data.ResultStatus.ERROR_AND_RETRY)}


class OrphanSweep:
    def __init__(self, lifecycle: JobLifecycle, running: RunningJobs, *, grace_ms: int) -> None:
        self.lifecycle = lifecycle
        self.running = running
        self.grace_ms = grace_ms
        # Suspects: id -> when first seen orphaned (epoch ms); cleared as soon as one is held again.
        self._statuses: dict[int, int] = {}
        self._keys: dict[int, int] = {}
        self._stranded: dict[int, int] = {}
        self._routes: dict[int, int] = {}

    async def run(self) -> None:
        """Sweep every half grace period until cancelled; a failed sweep is logged and retried."""
        while True:
            await trio.sleep(self.grace_ms / 2000)
            try:
                await self.sweep()
            except Exception:
                log.exception("orphan sweep failed; trying again later")

    async def sweep(self) -> int:
        """One look; returns how many orphans it ended."""
        storage = self.lifecycle.storage
        now = now_ms()
        statuses = {job_id for job_id, _ in await storage.status.all()}
        unheld = statuses - await storage.queue.held(statuses)
        orphans, stranded = set(), set()
        for job_id in unheld:
            if self.running.get(job_id) is not None:
                continue
            row = await storage.repo.find_job(job_id)
            if row is None:
                orphans.add(job_id)
            elif _is_unclaimed(row, now) and (not row.data.run_after_time
                                              or await self.lifecycle.workers.get(row.data.worker_id.value) is None):
                stranded.add(job_id)
        keyless = set(await storage.uniq_keys.holders()) - statuses
        unrouted = set(await storage.bus.routed_jobs()) - statuses
        ended = 0
        for job_id in self._due(self._statuses, orphans, now):
            if await self._end(job_id):
                ended += 1
        for job_id in self._due(self._stranded, stranded, now):
            if await self._requeue(job_id):
                ended += 1
        for job_id in self._due(self._keys, keyless, now):
            if await storage.status.get(job_id) is None:  # still no status: nothing will free it
                log.warning("uniq_key of job %s released: the job has no status (its enqueue died halfway)",
                            job_id)
                await storage.uniq_keys.release(job_id)
                ended += 1
        for job_id in self._due(self._routes, unrouted, now):
            if await storage.status.get(job_id) is None:  # a settle drops a route with the status
                await storage.bus.drop_route(job_id)
        return ended

    def _due(self, suspects: dict[int, int], seen: set[int], now: int) -> list[int]:
        """Remember what is orphaned now; return what has been orphaned for a grace period."""
        for job_id in list(suspects):
            if job_id not in seen:
                del suspects[job_id]
        for job_id in seen:
            suspects.setdefault(job_id, now)
        due = [job_id for job_id, since in suspects.items() if now - since >= self.grace_ms]
        for job_id in due:
            del suspects[job_id]
        return due

    async def _requeue(self, job_id: int) -> bool:
        """Queue again a job stranded on its backup row, if it still is. The row is claimed
        first (compared with the lease read), so of several processes' sweeps one pushes it; a
        popper takes the claim over as it does from any process."""
        with trio.CancelScope(shield=True):
            requeued = await self._requeue_stranded(job_id)
        return requeued

    async def _requeue_stranded(self, job_id: int) -> bool:
        lifecycle = self.lifecycle
        storage = lifecycle.storage
        row = await storage.repo.find_job(job_id)
        if row is None or not _is_unclaimed(row, now_ms()) or self.running.get(job_id) is not None \
                or await storage.queue.held([job_id]):
            return False
        worker = await lifecycle.workers.get(row.data.worker_id.value)
        if row.data.run_after_time and worker is not None:
            return False  # a scheduled row of a live worker: its due-job fetchers run it
        lease = now_ms() + lifecycle.claim_lease_ms
        if not await storage.repo.claim_job(job_id, row.data.grabbed_until_time or 0, lease,
                                            run_after_time=row.data.run_after_time):
            return False
        if worker is None:  # its worker is gone: nothing would ever run it
            now = now_ms()
            reason = f"worker {row.data.worker_id.value} was deleted before job {job_id} ran"
            await lifecycle.finish(lifecycle.result_of(row, None, data.ResultStatus.FATAL_ERROR, [reason.encode()],
                                                       now, now), None, delete_row=True)
            return True
        log.warning("job %s was stranded on its backup row (its enqueue died before queueing it); "
                    "queued again by the orphan sweep", job_id)
        await lifecycle.restore(row, worker)
        return True

    async def _end(self, job_id: int) -> bool:
        # Begun, it runs to its end: a stop between settling and storing the result would leave
        # an ended job without the result that says why.
        with trio.CancelScope(shield=True):
            ended = await self._end_orphan(job_id)
        return ended

    async def _end_orphan(self, job_id: int) -> bool:
        lifecycle = self.lifecycle
        repo = lifecycle.storage.repo
        if self.running.get(job_id) is not None or await repo.find_job(job_id) is not None:
            return False  # held again meanwhile
        past = await repo.list_results_by_job_id(job_id)
        finals = [r for r in past if int(r.data.status) not in _FINAL_EXCLUDED]
        if finals:  # it had ended; only its settle step was lost
            result = max(finals, key=lambda r: r.data.end_time)
            worker = await lifecycle.workers.get(result.data.worker_id.value)
            return await lifecycle.settle_orphan(job_id, result, worker)
        # Nothing to go on but its id (and an attempt's result, if one was stored).
        job = data.Job(id=data.JobId(value=job_id), data=data.JobData())
        if past:
            last = max(past, key=lambda r: r.data.end_time).data
            job.data = data.JobData(worker_id=last.worker_id, args=last.args, uniq_key=last.uniq_key,
                                    enqueue_time=last.enqueue_time, run_after_time=last.run_after_time,
                                    retried=last.retried, priority=last.priority, timeout=last.timeout)
        worker = await lifecycle.workers.get(job.data.worker_id.value) if past else None
        reason = (f"job {job_id} was lost between two steps (the process handling it stopped); "
                  f"ended by the orphan sweep")
        now = now_ms()
        result = lifecycle.result_of(job, worker, data.ResultStatus.FATAL_ERROR, [reason.encode()], now, now)
        if not await lifecycle.settle_orphan(job_id, result, worker):
            return False
        log.warning("%s", reason)
        await lifecycle.store_result(result, worker)
        return True


def _is_unclaimed(row: data.Job, now: int) -> bool:
    return (row.data.grabbed_until_time or 0) <= now
