"""One job from start to finish, as one readable pipeline:

resolve worker -> wait until run_after_time -> mark RUNNING -> run in a runner host under the
job's timeout -> classify the outcome -> store (if the worker's flags say so) -> deliver
(DIRECT waiter, Listen subscribers, worker streams) -> clean up status and backup row.

Nothing in here blocks: the runner runs in a subprocess host, storage calls are trio calls.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import trio

from actors.process_pool import HostCrashed, ProcessPool
from jobworkerp.ids import SnowflakeGenerator
from jobworkerp.proto.jobworkerp import data
from jobworkerp.runners.base import RunnerError
from jobworkerp.runners.host import run_job
from jobworkerp.runners.registry import RunnerRegistry
from jobworkerp.storage import Storage
from jobworkerp.storage.group_commit import GroupCommitWriter
from jobworkerp.usecase.results import build_result
from jobworkerp.usecase.workers import Workers
from jobworkerp.worker.running import RunningJobs

log = logging.getLogger(__name__)

Status = data.ResultStatus


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Outcome:
    status: data.ResultStatus
    items: list[bytes]


@dataclass
class ExecutorContext:
    """What every job execution needs; shared by all channels of a process."""

    storage: Storage
    workers: Workers
    registry: RunnerRegistry
    ids: SnowflakeGenerator
    running: RunningJobs
    result_writer: GroupCommitWriter[data.JobResult]


def _error(status: data.ResultStatus, message: str) -> Outcome:
    return Outcome(status, [message.encode("utf-8", "replace")])


def should_store(status: data.ResultStatus, wd: data.WorkerData) -> bool:
    return wd.store_success if status == Status.SUCCESS else wd.store_failure


def final_status(status: data.ResultStatus, job: data.Job, wd: data.WorkerData) -> data.ResultStatus:
    """A retryable failure with no retries left is reported as MAX_RETRY (spec §5.6)."""
    max_retry = wd.retry_policy.max_retry if wd.retry_policy is not None else 0
    if status == Status.ERROR_AND_RETRY and job.data.retried >= max_retry:
        return Status.MAX_RETRY
    return status


async def _perform(pool: ProcessPool, ref: str | None, runner_name: str, worker: data.Worker,
                   job: data.Job) -> Outcome:
    """Run the job in a runner host and turn every way it can end into an Outcome."""
    if ref is None:
        return _error(Status.FATAL_ERROR, f"runner {runner_name} is not available in this version")
    wd = worker.data
    timeout_ms = job.data.timeout
    with trio.move_on_after(timeout_ms / 1000 if timeout_ms else float("inf")) as scope:
        try:
            items = await pool.run(run_job, ref, wd.runner_settings, job.data.args, worker.id.value, wd.use_static)
            return Outcome(Status.SUCCESS, list(items))
        except RunnerError as e:
            return _error(e.status, e.message)
        except HostCrashed as e:
            return _error(Status.ERROR_AND_RETRY, str(e))
        except Exception as e:
            return _error(Status.OTHER_ERROR, f"{type(e).__name__}: {e}")
    assert scope.cancelled_caught
    return _error(Status.ERROR_AND_RETRY, f"job timed out after {timeout_ms} ms; the runner was killed")


async def execute_job(ctx: ExecutorContext, pool: ProcessPool, job: data.Job) -> None:
    """Run one popped job to completion; never raises for a job failure."""
    job_id = job.id.value
    storage = ctx.storage
    worker = await ctx.workers.get(job.data.worker_id.value)
    if worker is None:
        log.warning("job %s: worker %s no longer exists; job dropped", job_id, job.data.worker_id.value)
        await storage.status.delete(job_id)
        await storage.repo.delete_job(job_id)
        # Nothing is stored, but a DIRECT caller or a Listen must not wait forever.
        gone = _error(Status.FATAL_ERROR, f"worker {job.data.worker_id.value} was deleted before job {job_id} ran")
        now = now_ms()
        notice = build_result(ctx.ids.next_id(), job, None, gone.status, gone.items, now, now)
        await storage.bus.publish(notice, to_job=True, to_worker=False)
        return
    wd = worker.data
    spec = ctx.registry.get(wd.runner_id.value)

    entry = ctx.running.add(job)
    start = now_ms()
    outcome = _error(Status.CANCELLED, f"job {job_id} was deleted while it was running")
    try:
        with entry.scope:
            delay_ms = job.data.run_after_time - now_ms()
            if delay_ms > 0:
                await trio.sleep(delay_ms / 1000)
            await storage.status.set(job_id, data.JobStatus.RUNNING)
            start = now_ms()
            if spec is None:
                outcome = _error(Status.FATAL_ERROR, f"runner {wd.runner_id.value} does not exist")
            else:
                outcome = await _perform(pool, spec.ref, spec.name, worker, job)
            if entry.deleted:  # deleted just as the run ended: still report it as aborted
                outcome = _error(Status.CANCELLED, f"job {job_id} was deleted while it was running")
    finally:
        ctx.running.remove(job_id)

    end = now_ms()
    status = final_status(outcome.status, job, wd)
    result = build_result(ctx.ids.next_id(), job, worker, status, outcome.items, start, end)
    if should_store(status, wd):
        try:
            await ctx.result_writer.write(result)
        except Exception:
            log.exception("job %s: storing its result failed", job_id)
    await storage.status.delete(job_id)
    if wd.queue_type == data.QueueType.WITH_BACKUP:
        await storage.repo.delete_job(job_id)
    await storage.bus.publish(result, to_job=True, to_worker=wd.response_type != data.ResponseType.DIRECT)
