"""Puts a job where it belongs — queue, RDB row, or both (spec §5.3) — for every producer:
client enqueues, retries, periodic re-runs and next_workers chains all go through `submit`.
"""

from __future__ import annotations

from collections.abc import Callable

from jobworkerp.clock import now_ms
from jobworkerp.config import Config
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage import Storage
from jobworkerp.usecase.workers import channel_of
from jobworkerp.worker.routing import Route, needs_rdb_time, route


class Dispatcher:
    def __init__(self, storage: Storage, config: Config) -> None:
        self._storage = storage
        self._fetch_interval_ms = config.fetch_interval_ms
        # Called when a stored job is due within the fetch window, so a local scheduler can
        # claim it now instead of at its next tick (set by the app; no-op without a scheduler).
        self.on_due_soon: Callable[[], None] = lambda: None

    async def submit(self, job: data.Job, worker: data.Worker, *, new: bool) -> Route:
        """Store and/or queue the job and mark it PENDING.

        new=True inserts the RDB row (AlreadyExists on a clash); False replaces the row of a job
        that already has one (retries and periodic re-runs keep their id).
        """
        wd = worker.data
        jd = job.data
        now = now_ms()
        if jd.run_after_time == 0 and needs_rdb_time(wd):
            jd.run_after_time = now
        where = route(wd, jd.run_after_time, now, self._fetch_interval_ms)
        if where != Route.QUEUE:
            jd.grabbed_until_time = 0
            row = job
            if where == Route.RDB_AND_QUEUE:
                # The backup row says "instant" (run_after_time 0), so the scheduler never also
                # runs a job that waits in a queue; the queued copy keeps its real time.
                row = data.Job.parse(bytes(job))
                row.data.run_after_time = 0
            if new:
                await self._storage.repo.create_job(row)
            else:
                await self._storage.repo.upsert_job(row)
        await self._storage.status.set(job.id.value, data.JobStatus.PENDING)
        if where == Route.RDB and jd.run_after_time <= now + self._fetch_interval_ms:
            self.on_due_soon()
        if where != Route.RDB:
            try:
                await self._storage.queue.push(channel_of(wd), job)
            except BaseException:
                await self._storage.status.delete(job.id.value)
                if where == Route.RDB_AND_QUEUE and new:
                    await self._storage.repo.delete_job(job.id.value)
                raise
        return where
