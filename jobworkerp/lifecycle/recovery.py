"""Standalone start-up recovery: what a crashed or stopped all-in-one left in its database.

In Standalone this process is the only worker, so every claim in the table belongs to a dead
process: release them all at once (no lease to wait out), queue backed-up instant jobs again
(their in-memory queue entries died with the process), and rebuild the in-memory job status
and uniq_key maps for the jobs that still exist.
"""

from __future__ import annotations

import logging

from jobworkerp.clock import now_ms
from jobworkerp.lifecycle.transitions import JobLifecycle
from jobworkerp.proto.jobworkerp import data

log = logging.getLogger(__name__)


async def recover_standalone(life: JobLifecycle) -> int:
    """Returns how many jobs were found in the database."""
    storage = life.storage
    jobs = await storage.repo.list_jobs()
    for job in jobs:
        job_id = job.id.value
        lease = job.data.grabbed_until_time or 0
        if lease:
            await storage.repo.claim_job(job_id, lease, 0)
            job.data.grabbed_until_time = 0
        if job.data.uniq_key is not None:
            await storage.uniq_keys.acquire(job.data.uniq_key, job_id)
        worker = await life.workers.get(job.data.worker_id.value)
        if worker is None:  # deleted while this server was down: nothing would ever run it
            now = now_ms()
            reason = f"worker {job.data.worker_id.value} was deleted before job {job_id} ran"
            await life.finish(life.result_of(job, None, data.ResultStatus.FATAL_ERROR, [reason.encode()], now, now),
                              None, delete_row=True)
        elif job.data.run_after_time == 0:
            await life.restore(job, worker)
        else:
            await storage.status.set(job_id, data.JobStatus.PENDING)
    if jobs:
        log.info("recovered %d job(s) from the database", len(jobs))
    return len(jobs)
