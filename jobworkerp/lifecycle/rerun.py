"""The same job again (pure): retries and periodic runs keep the job's id, args and settings."""

from __future__ import annotations

from jobworkerp.proto.jobworkerp import data


def rerun_of(job: data.Job, *, run_after_time: int, retried: int) -> data.Job:
    """A copy of `job` due at `run_after_time`, unclaimed, with the given retry count.

    Keeping the id is what lets JobService.Delete stop a retrying job or a periodic series.
    """
    jd = job.data
    return data.Job(
        id=job.id,
        data=data.JobData(
            worker_id=jd.worker_id,
            args=jd.args,
            uniq_key=jd.uniq_key,
            enqueue_time=jd.enqueue_time,
            grabbed_until_time=0,
            run_after_time=run_after_time,
            retried=retried,
            priority=jd.priority,
            timeout=jd.timeout,
        ),
    )
