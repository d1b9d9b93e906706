"""A job's results (pure): build the JobResult of an attempt, and whether the worker keeps it.

Stored rows do not keep the worker-derived fields (worker_name, max_retry, response_type, store
flags); they are filled from the worker when a result is built or read.
"""

from __future__ import annotations

from jobworkerp.proto.jobworkerp import data


def fill_worker_fields(result: data.JobResult, worker: data.Worker | None) -> data.JobResult:
    """Copy the worker-derived fields of a result from its (current) worker definition."""
    if worker is not None and result.data is not None:
        wd = worker.data
        rd = result.data
        rd.worker_name = wd.name
        rd.max_retry = wd.retry_policy.max_retry if wd.retry_policy is not None else 0
        rd.response_type = wd.response_type
        rd.store_success = wd.store_success
        rd.store_failure = wd.store_failure
    return result


def build_result(result_id: int, job: data.Job, worker: data.Worker | None, status: data.ResultStatus,
                 items: list[bytes], start: int, end: int) -> data.JobResult:
    """The JobResult of one attempt of `job`, with the worker-derived fields filled in."""
    jd = job.data
    result = data.JobResult(
        id=data.JobResultId(value=result_id),
        data=data.JobResultData(
            job_id=job.id,
            worker_id=jd.worker_id,
            args=jd.args,
            uniq_key=jd.uniq_key,
            status=status,
            output=data.ResultOutput(items=items),
            retried=jd.retried,
            priority=jd.priority,
            timeout=jd.timeout,
            enqueue_time=jd.enqueue_time,
            run_after_time=jd.run_after_time,
            start_time=start,
            end_time=end,
        ),
    )
    return fill_worker_fields(result, worker)


def should_store(status: data.ResultStatus, wd: data.WorkerData) -> bool:
    """Whether the worker's flags ask for a result of this status to be stored."""
    return wd.store_success if status == data.ResultStatus.SUCCESS else wd.store_failure
