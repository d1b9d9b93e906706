"""One job from start to finish, as one readable pipeline:

resolve worker -> claim its RDB row if it has one -> wait until run_after_time -> mark RUNNING ->
run in a runner host under the job's timeout (renewing the claim) -> classify the outcome ->
then either schedule a retry, or finish: store (if the worker's flags say so), schedule the next
periodic run or drop status / row / uniq_key, deliver (DIRECT waiter, Listen subscribers, worker
streams), start next_workers jobs.

Nothing in here blocks: the runner runs in a subprocess host, storage calls are trio calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from actors.process_pool import HostCrashed
from jobworkerp.clock import now_ms, sleep_until_ms
from jobworkerp.ids import SnowflakeGenerator
from jobworkerp.proto.jobworkerp import data
from jobworkerp.runners.base import RunnerError
from jobworkerp.runners.host import run_job
from jobworkerp.runners.registry import RunnerRegistry
from jobworkerp.storage import Storage
from jobworkerp.storage.group_commit import GroupCommitWriter
from jobworkerp.usecase.dispatch import Dispatcher
from jobworkerp.usecase.results import build_result
from jobworkerp.usecase.workers import Workers
from jobworkerp.worker import chain, periodic, retry
from jobworkerp.worker.routing import Route, route
from jobworkerp.worker.running import RunningJob, RunningJobs

log = logging.getLogger(__name__)

Status = data.ResultStatus


class RunnerPool(Protocol):
    """What the executor needs of a runner-host pool (actors.ProcessPool, or a stub in tests)."""

    async def run(self, fn: Any, *args: Any) -> Any: ...


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
    dispatcher: Dispatcher
    result_writer: GroupCommitWriter[data.JobResult]
    fetch_interval_ms: int
    claim_lease_ms: int


def _error(status: data.ResultStatus, message: str) -> Outcome:
    return Outcome(status, [message.encode("utf-8", "replace")])


def should_store(status: data.ResultStatus, wd: data.WorkerData) -> bool:
    return wd.store_success if status == Status.SUCCESS else wd.store_failure


async def _perform(pool: RunnerPool, ref: str | None, runner_name: str, worker: data.Worker,
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


async def _keep_claim(ctx: ExecutorContext, job_id: int, lease_until: int) -> None:
    """Renew the RDB claim while the job runs, so only a dead process's claims expire."""
    while True:
        await trio.sleep(ctx.claim_lease_ms / 3000)
        renewed = now_ms() + ctx.claim_lease_ms
        if not await ctx.storage.repo.claim_job(job_id, lease_until, renewed):
            return  # row deleted or taken over: nothing left to renew
        lease_until = renewed


async def _run_attempt(ctx: ExecutorContext, pool: RunnerPool, entry: RunningJob, worker: data.Worker,
                       lease_until: int | None) -> tuple[Outcome, int]:
    """Wait until due, run once; returns the outcome and the start time."""
    job = entry.job
    job_id = job.id.value
    start = now_ms()
    outcome = _error(Status.CANCELLED, f"job {job_id} was deleted while it was running")
    with entry.scope:
        await sleep_until_ms(job.data.run_after_time)
        await ctx.storage.status.set(job_id, data.JobStatus.RUNNING)
        start = now_ms()
        spec = ctx.registry.get(worker.data.runner_id.value)
        if spec is None:
            outcome = _error(Status.FATAL_ERROR, f"runner {worker.data.runner_id.value} does not exist")
        elif lease_until is None:  # the common case: no RDB claim to keep alive
            outcome = await _perform(pool, spec.ref, spec.name, worker, job)
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_keep_claim, ctx, job_id, lease_until)
                outcome = await _perform(pool, spec.ref, spec.name, worker, job)
                nursery.cancel_scope.cancel()
    if entry.deleted:  # deleted while (or just as) it ran
        outcome = _error(Status.CANCELLED, f"job {job_id} was deleted while it was running")
    return outcome, start


async def execute_job(ctx: ExecutorContext, pool: RunnerPool, job: data.Job, *, claimed_until: int | None = None
                      ) -> None:
    """Run one job handed over by a channel to completion; never raises for a job failure.

    claimed_until: the lease end when the scheduler already claimed the job's RDB row.
    """
    job_id = job.id.value
    storage = ctx.storage
    entry = ctx.running.add(job)  # from here on Delete can cancel it
    try:
        worker = await ctx.workers.get(job.data.worker_id.value)
        if worker is None:
            await _drop_orphan(ctx, job)
            return
        wd = worker.data
        now = now_ms()
        has_row = claimed_until is not None or route(wd, job.data.run_after_time, now, ctx.fetch_interval_ms) in (
            Route.RDB, Route.RDB_AND_QUEUE)
        if has_row and claimed_until is None:
            # A WITH_BACKUP job popped from the queue. The queue hands a job to one worker at a
            # time (a dead worker's jobs come back only after its lease ran out), so take the
            # row's claim over from whoever held it; a missing row means the job was deleted.
            row = await storage.repo.find_job(job_id)
            claimed_until = now + ctx.claim_lease_ms
            if row is None or not await storage.repo.claim_job(job_id, row.data.grabbed_until_time or 0,
                                                               claimed_until):
                log.info("job %s: its backup row is gone or changed; not running it here", job_id)
                return
        outcome, start = await _run_attempt(ctx, pool, entry, worker, claimed_until)
    finally:
        ctx.running.remove(job_id)
    await _after_attempt(ctx, job, worker, outcome, start, now_ms(), has_row, entry.deleted)


async def _after_attempt(ctx: ExecutorContext, job: data.Job, worker: data.Worker, outcome: Outcome, start: int,
                         end: int, has_row: bool, deleted: bool) -> None:
    """Retry, or finish: store, deliver, periodic next run / drop the row, chain, free uniq_key."""
    storage = ctx.storage
    wd = worker.data
    job_id = job.id.value
    policy = wd.retry_policy
    if not deleted and retry.should_retry(outcome.status, policy, job.data.retried):
        attempt = build_result(ctx.ids.next_id(), job, worker, outcome.status, outcome.items, start, end)
        if should_store(outcome.status, wd):
            await _store(ctx, attempt)
        again = retry.retry_job(job, policy, end)
        await ctx.dispatcher.submit(again, worker, new=False)
        return

    status = retry.final_status(outcome.status, policy, job.data.retried)
    result = build_result(ctx.ids.next_id(), job, worker, status, outcome.items, start, end)
    if should_store(status, wd):
        await _store(ctx, result)
    # Settle the job's state before announcing the result, so a client that has the result
    # never still sees the job's status, row or uniq_key.
    if wd.periodic_interval and not deleted:
        nxt = periodic.next_periodic_run_ms(job.data.run_after_time, start, wd.periodic_interval, now_ms())
        await ctx.dispatcher.submit(periodic.next_run_job(job, nxt), worker, new=False)
    else:
        await storage.status.delete(job_id)
        if has_row:
            await storage.repo.delete_job(job_id)
        if job.data.uniq_key is not None:
            await storage.uniq_keys.release(job_id)
    await storage.bus.publish(result, to_job=True, to_worker=wd.response_type != data.ResponseType.DIRECT)
    if status == Status.SUCCESS and wd.next_workers:
        await _start_chain(ctx, job, wd, outcome.items)


async def _store(ctx: ExecutorContext, result: data.JobResult) -> None:
    try:
        await ctx.result_writer.write(result)
    except Exception:
        log.exception("job %s: storing its result failed", result.data.job_id.value)


async def _start_chain(ctx: ExecutorContext, job: data.Job, wd: data.WorkerData, items: list[bytes]) -> None:
    """Each output item becomes the args of one job for each next worker (missing workers skipped)."""
    for next_id in wd.next_workers:
        nxt = await ctx.workers.get(next_id.value)
        if nxt is None:
            log.warning("job %s: next worker %s does not exist; skipped", job.id.value, next_id.value)
            continue
        for args in chain.chained_args(items):
            chained = chain.chained_job(job, nxt, args, ctx.ids.next_id(), now_ms())
            try:
                await ctx.dispatcher.submit(chained, nxt, new=True)
            except Exception:
                log.exception("job %s: could not start next worker %s; the rest of the chain is skipped",
                              job.id.value, next_id.value)
                return


async def _drop_orphan(ctx: ExecutorContext, job: data.Job) -> None:
    """The job's worker was deleted: drop the job, but tell anyone waiting on it."""
    job_id = job.id.value
    log.warning("job %s: worker %s no longer exists; job dropped", job_id, job.data.worker_id.value)
    await ctx.storage.status.delete(job_id)
    await ctx.storage.repo.delete_job(job_id)
    if job.data.uniq_key is not None:
        await ctx.storage.uniq_keys.release(job_id)
    gone = _error(Status.FATAL_ERROR, f"worker {job.data.worker_id.value} was deleted before job {job_id} ran")
    now = now_ms()
    notice = build_result(ctx.ids.next_id(), job, None, gone.status, gone.items, now, now)
    await ctx.storage.bus.publish(notice, to_job=True, to_worker=False)
