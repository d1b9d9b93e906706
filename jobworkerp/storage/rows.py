"""Row <-> protobuf mapping shared by the SQL drivers (SQLite and MySQL).

Both store the same columns in the same order (each driver's schema module names them), so the
mapping lives here once. The one difference is how a uint64 `timeout` fits a column: SQLite's
INTEGER is signed (reinterpret the bits), MySQL has BIGINT UNSIGNED (store as is) — each
driver passes its `TimeoutCodec`.

Rules: absent channel <-> DEFAULT_CHANNEL; absent retry policy <-> {NONE, 0, 0, 0, 2.0}; absent
id messages <-> 0 (upstream's columns are NOT NULL); grabbed_until_time None <-> 0;
next_workers as comma-joined ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobworkerp.errors import InvalidArgument
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.rdb import DEFAULT_CHANNEL
from jobworkerp.wire import encode
from jobworkerp.wire_decode import decode

Row = tuple[Any, ...]
# Stored when a worker has no retry policy: (retry_type, interval, max_interval, max_retry, basis).
NO_RETRY = (int(data.RetryType.NONE), 0, 0, 0, 2.0)


def _same(value: int) -> int:
    return value


@dataclass(frozen=True)
class TimeoutCodec:
    """How a uint64 timeout is written to and read from the driver's column."""

    to_db: Callable[[int], int] = _same
    from_db: Callable[[int], int] = _same


def id_value(msg: Any) -> int:
    """Value of an optional ``*Id`` message; 0 when absent."""
    return 0 if msg is None else int(msg.value)


def runner_from_row(row: Row) -> data.Runner:
    runner_id, name, _file_name, runner_type = row
    return data.Runner(
        id=data.RunnerId(value=runner_id),
        data=data.RunnerData(name=name, runner_type=data.RunnerType(runner_type)),
    )


def retry_params(policy: data.RetryPolicy | None) -> tuple[int, int, int, int, float]:
    if policy is None:
        return NO_RETRY
    return (int(policy.type), int(policy.interval), int(policy.max_interval), int(policy.max_retry),
            float(policy.basis))


def worker_params(worker: data.WorkerData) -> Row:
    """Column values for the worker columns after the autoincrement id."""
    return (
        worker.name,
        id_value(worker.runner_id),
        bytes(worker.runner_settings),
        *retry_params(worker.retry_policy),
        int(worker.periodic_interval),
        DEFAULT_CHANNEL if worker.channel is None else worker.channel,
        int(worker.queue_type),
        int(worker.response_type),
        int(worker.store_success),
        int(worker.store_failure),
        ",".join(str(w.value) for w in worker.next_workers),
        int(worker.use_static),
    )


def worker_from_row(row: Row) -> data.Worker:
    (wid, name, runner_id, settings, rtype, interval, max_interval, max_retry, basis, periodic,
     channel, queue_type, response_type, store_success, store_failure, next_workers, use_static) = row  # fmt: skip
    return data.Worker(
        id=data.WorkerId(value=wid),
        data=data.WorkerData(
            name=name,
            runner_id=data.RunnerId(value=runner_id),
            runner_settings=bytes(settings),
            retry_policy=data.RetryPolicy(type=data.RetryType(rtype), interval=interval, max_interval=max_interval,
                                          max_retry=max_retry, basis=basis),
            periodic_interval=periodic,
            channel=None if channel == DEFAULT_CHANNEL else channel,
            queue_type=data.QueueType(queue_type),
            response_type=data.ResponseType(response_type),
            store_success=bool(store_success),
            store_failure=bool(store_failure),
            next_workers=[data.WorkerId(value=int(x)) for x in next_workers.split(",") if x],
            use_static=bool(use_static),
        ),
    )


def job_params(job: data.Job, timeout: TimeoutCodec, extras: bytes = b"") -> Row:
    """Column values in job-column order; the id is mandatory (jobs carry snowflakes).
    `extras`: the encoded JobExtras kept with the job (empty: none, stored as NULL)."""
    if job.id is None:
        raise InvalidArgument("job.id", "a job must carry its id to be stored")
    d = job.data if job.data is not None else data.JobData()  # not `or`: betterproto2's __bool__ is slow
    return (
        int(job.id.value),
        id_value(d.worker_id),
        bytes(d.args),
        d.uniq_key,
        int(d.enqueue_time),
        int(d.grabbed_until_time or 0),
        int(d.run_after_time),
        int(d.retried),
        int(d.priority),
        timeout.to_db(int(d.timeout)),
        extras or None,
    )


def job_from_row(row: Row, timeout: TimeoutCodec) -> data.Job:
    jid, worker_id, args, uniq_key, enqueue, grabbed, run_after, retried, priority, stored_timeout, _extras = row
    return data.Job(
        id=data.JobId(value=jid),
        data=data.JobData(
            worker_id=data.WorkerId(value=worker_id),
            args=bytes(args),
            uniq_key=uniq_key,
            enqueue_time=enqueue,
            grabbed_until_time=grabbed,
            run_after_time=run_after,
            retried=retried,
            priority=data.Priority(priority),
            timeout=timeout.from_db(stored_timeout),
        ),
    )


def result_params(result: data.JobResult, timeout: TimeoutCodec) -> Row:
    """Column values in job-result-column order (worker-derived fields are not stored)."""
    if result.id is None:
        raise InvalidArgument("job_result.id", "a job result must carry its id to be stored")
    d = result.data if result.data is not None else data.JobResultData()  # not `or`: __bool__ is slow
    return (
        int(result.id.value),
        id_value(d.job_id),
        id_value(d.worker_id),
        bytes(d.args),
        d.uniq_key,
        int(d.status),
        encode(d.output) if d.output is not None else b"",
        int(d.retried),
        int(d.priority),
        int(d.enqueue_time),
        int(d.run_after_time),
        int(d.start_time),
        int(d.end_time),
        timeout.to_db(int(d.timeout)),
    )


def result_from_row(row: Row, timeout: TimeoutCodec) -> data.JobResult:
    (rid, job_id, worker_id, args, uniq_key, status, output, retried, priority,
     enqueue, run_after, start, end, stored_timeout) = row  # fmt: skip
    return data.JobResult(
        id=data.JobResultId(value=rid),
        data=data.JobResultData(
            job_id=data.JobId(value=job_id),
            worker_id=data.WorkerId(value=worker_id),
            args=bytes(args),
            uniq_key=uniq_key,
            status=data.ResultStatus(status),
            output=decode(data.ResultOutput, output),
            retried=retried,
            priority=data.Priority(priority),
            timeout=timeout.from_db(stored_timeout),
            enqueue_time=enqueue,
            run_after_time=run_after,
            start_time=start,
            end_time=end,
        ),
    )
