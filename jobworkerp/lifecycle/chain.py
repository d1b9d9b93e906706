"""next_workers chains (pure): a successful job's output items become the next jobs' args."""

from __future__ import annotations

from collections.abc import Iterator

from jobworkerp.proto.jobworkerp import data


def chained_args(items: list[bytes]) -> Iterator[bytes]:
    """One next job per non-empty output item (upstream skips empty ones)."""
    return (item for item in items if item)


def chained_job(previous: data.Job, next_worker: data.Worker, args: bytes, job_id: int, now: int) -> data.Job:
    """A new job for the next worker; it inherits priority and timeout, not uniq_key (two next
    jobs sharing the key would reject each other)."""
    return data.Job(
        id=data.JobId(value=job_id),
        data=data.JobData(
            worker_id=next_worker.id,
            args=args,
            enqueue_time=now,
            run_after_time=0,
            retried=0,
            priority=previous.data.priority,
            timeout=previous.data.timeout,
        ),
    )
