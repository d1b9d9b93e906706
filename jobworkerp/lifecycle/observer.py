"""What the job lifecycle tells an observer about each job: accepted, started, a run over, ended.

The observer is the metrics recorder when METRICS_ADDR is set (`jobworkerp/metrics/`), and
`UNOBSERVED` otherwise, whose methods do nothing: the job path then pays a few no-op calls per
job and nothing else. The lifecycle calls these from the one place each transition happens
(`transitions.py`), so every caller's jobs are counted the same way and each job's end once.

The methods are synchronous and must not block or fail: they run inside job transitions.
"""

from __future__ import annotations

from typing import Protocol

from jobworkerp.proto.jobworkerp import data


class JobObserver(Protocol):
    def enqueued(self, job: data.Job, worker: data.Worker) -> None:
        """A new job was accepted (a client's Enqueue, or a job of a next_workers chain)."""

    def started(self, job: data.Job, worker: data.Worker) -> None:
        """A taken job starts a run (each retry and each periodic run is a run of its own)."""

    def ran(self, result: data.JobResult, worker: data.Worker | None) -> None:
        """A run is over; `result` is its attempt's result (start and end time of the run)."""

    def ended(self, result: data.JobResult, worker: data.Worker | None) -> None:
        """A job ended with its final result: once per job, when its ending was settled.
        `worker` is None when the job's worker no longer exists."""


class _Unobserved:
    """The observer when nobody observes: every method does nothing."""

    def enqueued(self, job: data.Job, worker: data.Worker) -> None:
        pass

    def started(self, job: data.Job, worker: data.Worker) -> None:
        pass

    def ran(self, result: data.JobResult, worker: data.Worker | None) -> None:
        pass

    def ended(self, result: data.JobResult, worker: data.Worker | None) -> None:
        pass


UNOBSERVED: JobObserver = _Unobserved()
