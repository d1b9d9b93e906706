"""Jobs in flight as the public API shows them, for the overview and the Jobs page.

The v0.7 API has no listing of queued or running jobs with their worker: JobStatusService.FindAll
gives every in-flight job's id and status (PENDING, RUNNING, WAIT_RESULT), JobService.FindList the
stored rows (scheduled, periodic, backed-up jobs) with their data, and JobService.Find one job
wherever it waits or runs. A snapshot joins them: statuses (at most queries.STATUS_READ_MAX),
the stored rows, and the details of at most FIND_PER_SNAPSHOT further jobs found one by one, kept
by id for as long as the job stays in flight, so a steady queue is looked up once. A job that
Find no longer sees has usually ended since its status was read: its status is asked again, and
it is left out when it has none. One whose details are still not known (not looked up yet, past
the budget, or not seen by Find) is counted under "unknown". PENDING with a run_after_time still ahead is
"scheduled", other PENDING jobs "queued".

Snapshots are shared by every viewer for MAX_AGE_S, so ten open overviews cost what one does; a
snapshot that took long (a deep queue, a busy server) is kept for SLOWDOWN times as long as it
took, so an open overview never keeps the server busy more than a fraction of the time.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import trio

from jobworkerp.dashboard import queries
from jobworkerp.dashboard.api import Api
from jobworkerp.proto.jobworkerp import data

MAX_AGE_S = 2.0
SLOWDOWN = 4.0
FIND_PER_SNAPSHOT = 200
UNKNOWN = "(unknown)"
DEFAULT_CHANNEL = "__default_job_channel__"  # storage/rdb.py's name for a worker with no channel


def channel_of(worker: data.Worker | None) -> str:
    if worker is None or worker.data is None:
        return UNKNOWN
    return worker.data.channel or DEFAULT_CHANNEL


def state_of(status: data.JobStatus, job: data.Job | None, now_ms: int) -> str:
    """queued | scheduled | running | wait_result (PENDING split by run_after_time)."""
    if status == data.JobStatus.RUNNING:
        return "running"
    if status == data.JobStatus.WAIT_RESULT:
        return "wait_result"
    if job is not None and job.data is not None and job.data.run_after_time > now_ms:
        return "scheduled"
    return "queued"


@dataclass
class ChannelCounts:
    queued: Counter[str] = field(default_factory=Counter)  # by priority name
    scheduled: int = 0
    running: int = 0
    wait_result: int = 0

    @property
    def queued_total(self) -> int:
        return sum(self.queued.values())


@dataclass
class Snapshot:
    taken_ms: int
    statuses: list[tuple[int, data.JobStatus]]  # newest first
    truncated: bool  # more jobs are in flight than were read
    jobs: dict[int, data.Job]  # details of the jobs looked up and found
    workers: dict[int, data.Worker]

    def job(self, job_id: int) -> data.Job | None:
        return self.jobs.get(job_id)

    def worker_of(self, job: data.Job | None) -> data.Worker | None:
        if job is None or job.data is None or job.data.worker_id is None:
            return None
        return self.workers.get(job.data.worker_id.value)

    def per_channel(self) -> dict[str, ChannelCounts]:
        counts: dict[str, ChannelCounts] = {}
        for job_id, status in self.statuses:
            job = self.jobs.get(job_id)
            channel = channel_of(self.worker_of(job)) if job is not None else UNKNOWN
            entry = counts.setdefault(channel, ChannelCounts())
            state = state_of(status, job, self.taken_ms)
            if state == "queued":
                priority = job.data.priority.name.removeprefix("PRIORITY_") if job is not None else UNKNOWN
                entry.queued[priority] += 1
            elif state == "scheduled":
                entry.scheduled += 1
            elif state == "running":
                entry.running += 1
            else:
                entry.wait_result += 1
        return counts


class InflightJobs:
    def __init__(self, api: Api) -> None:
        self._api = api
        self._details: dict[int, data.Job] = {}
        self._snapshot: Snapshot | None = None
        self._taken_at = 0.0
        self._max_age_s = MAX_AGE_S
        self._lock = trio.Lock()

    async def snapshot(self) -> Snapshot:
        async with self._lock:
            if self._snapshot is not None and trio.current_time() - self._taken_at < self._max_age_s:
                return self._snapshot
            started = trio.current_time()
            statuses, truncated = await self._api.run(queries.statuses)
            stored = await self._api.run(queries.rdb_jobs)
            workers = await self._api.run(queries.all_workers)
            live = {job_id for job_id, _ in statuses}
            self._details = {job_id: job for job_id, job in self._details.items() if job_id in live}
            for job in stored:
                if job.id.value in live:
                    self._details[job.id.value] = job
            missing = [job_id for job_id, _ in statuses if job_id not in self._details][:FIND_PER_SNAPSHOT]
            if missing:
                found = await self._api.run(queries.find_jobs, missing)
                self._details.update({job_id: job for job_id, job in found.items() if job is not None})
                statuses = await self._drop_ended(statuses, [job_id for job_id, job in found.items() if job is None])
            self._snapshot = Snapshot(int(time.time() * 1000), statuses, truncated, dict(self._details),
                                      {w.id.value: w for w in workers})
            self._taken_at = trio.current_time()
            self._max_age_s = max(MAX_AGE_S, SLOWDOWN * (self._taken_at - started))
            return self._snapshot

    async def _drop_ended(self, statuses: list[tuple[int, data.JobStatus]],
                          unseen: list[int]) -> list[tuple[int, data.JobStatus]]:
        """`statuses` without the jobs of `unseen` that have ended since (no status any more)."""
        if not unseen:
            return statuses
        now = await self._api.run(queries.job_statuses, unseen)
        ended = {job_id for job_id, status in now.items() if status is None}
        return [(job_id, status) for job_id, status in statuses if job_id not in ended]

    async def details(self, snapshot: Snapshot, ids: list[int]) -> None:
        """Look up the jobs of `ids` the snapshot does not know yet (a page of the Jobs list)."""
        missing = [job_id for job_id in ids if job_id not in snapshot.jobs]
        if missing:
            found = {job_id: job for job_id, job in (await self._api.run(queries.find_jobs, missing)).items()
                     if job is not None}
            snapshot.jobs.update(found)
            self._details.update(found)
