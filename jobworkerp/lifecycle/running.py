"""Jobs executing right now, so JobService.Delete can cancel them and Find can show them."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from jobworkerp.proto.jobworkerp import data


@dataclass
class RunningJob:
    job: data.Job
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    deleted: bool = False


class RunningJobs:
    def __init__(self) -> None:
        self._jobs: dict[int, RunningJob] = {}

    def add(self, job: data.Job) -> RunningJob:
        entry = RunningJob(job)
        self._jobs[job.id.value] = entry
        return entry

    def remove(self, job_id: int) -> None:
        self._jobs.pop(job_id, None)

    def job(self, job_id: int) -> data.Job | None:
        entry = self._jobs.get(job_id)
        return None if entry is None else entry.job

    def cancel(self, job_id: int) -> bool:
        """Cancel a running job because it was deleted; False when it is not running here."""
        entry = self._jobs.get(job_id)
        if entry is None:
            return False
        entry.deleted = True
        entry.scope.cancel()
        return True

    def __len__(self) -> int:
        return len(self._jobs)
