"""One taken job from start to finish, as one readable pipeline:

resolve worker -> claim its backup row if it has one -> wait until run_after_time -> mark RUNNING
-> run in a runner host under the job's timeout (renewing the row's claim) -> fold every way the
run can end into one Outcome -> report it through the lifecycle: a retry, a periodic job's next
run, or the job's end (then next_workers jobs).

Every state change goes through `JobLifecycle`; this module decides which one, never how. A run
that is interrupted by anything but its own end (shutdown, a storage error) is released back to
where it came from, never acknowledged as done.

Nothing in here blocks: the runner runs in a subprocess host, storage calls are trio calls.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

import trio

from actors.process_pool import HostCrashed
from jobworkerp.clock import now_ms, sleep_until_ms
from jobworkerp.errors import is_outage
from jobworkerp.lifecycle import periodic, retry
from jobworkerp.lifecycle.placement import channel_of
from jobworkerp.lifecycle.running import ActiveJob
from jobworkerp.lifecycle.transitions import JobLifecycle
from jobworkerp.proto.jobworkerp import data
from jobworkerp.runners.base import RunnerError
from jobworkerp.runners.host import run_job
from jobworkerp.runners.registry import RunnerRegistry, RunnerSpec
from jobworkerp.storage.output_stream import OutputWriter
from jobworkerp.tracing import current as current_tracing
from jobworkerp.tracing.carrier import trace_only
from jobworkerp.worker.output import open_output

if TYPE_CHECKING:
    from jobworkerp.tracing.spans import JobTrace  # loaded only once tracing is installed

log = logging.getLogger(__name__)

Status = data.ResultStatus
OUTAGE_PAUSE_S = 1.0  # how long a slot rests after its job went back because storage was out
GIVE_UP_AFTER = 3  # runs of one job failing outside the runner (not an outage) before it is ended


class RunnerPool(Protocol):
    """What the executor needs of a runner-host pool (actors.ProcessPool); `on_emit` takes the
    chunks a streamed job's runner sends as it runs (worker/output.py)."""

    async def run(self, fn: Any, *args: Any, on_emit: Callable[[bytes], None] | None = None) -> Any:
        """On a host of its own (killed if the caller is cancelled)."""

    async def run_shared(self, fn: Any, *args: Any, on_emit: Callable[[bytes], None] | None = None) -> Any:
        """On the pool's shared host, alongside other calls (cancelled by request)."""


@dataclass
class Outcome:
    status: data.ResultStatus
    items: list[bytes]


class Stumbles:
    """How often each job's run failed outside the runner (storage refusing its result, a bug)
    in this process. Such a run goes back to run again, which is right for a passing fault and
    an endless loop for one that repeats: the count lets the executor end the job instead."""

    LIMIT = 10_000  # jobs remembered; the oldest are forgotten first

    def __init__(self) -> None:
        self._counts: OrderedDict[int, int] = OrderedDict()

    def add(self, job_id: int) -> int:
        """Count one more failed run of the job; returns its count."""
        count = self._counts.pop(job_id, 0) + 1
        self._counts[job_id] = count
        while len(self._counts) > self.LIMIT:
            self._counts.popitem(last=False)
        return count

    def forget(self, job_id: int) -> None:
        if self._counts:
            self._counts.pop(job_id, None)


@dataclass
class ExecutorContext:
    """What every job execution needs; shared by all channels of a process."""

    lifecycle: JobLifecycle
    registry: RunnerRegistry
    stumbles: Stumbles = field(default_factory=Stumbles)


# The longest failure message a result keeps. Runners bound their own (stderr tails, 5xx bodies),
# but a plugin may raise with any text: the stored result must stay small whatever it says.
ERROR_MESSAGE_LIMIT = 64 * 1024


def _error(status: data.ResultStatus, message: str) -> Outcome:
    """A failed outcome; a message longer than ERROR_MESSAGE_LIMIT keeps its start, marked as cut
    (a message is for a human to read, unlike output, which is refused rather than cut)."""
    encoded = message.encode("utf-8", "replace")
    if len(encoded) > ERROR_MESSAGE_LIMIT:
        marker = f"\n... ({len(encoded) - ERROR_MESSAGE_LIMIT} more bytes of this message cut)".encode()
        encoded = encoded[:ERROR_MESSAGE_LIMIT] + marker
    return Outcome(status, [encoded])


async def _perform(pool: RunnerPool, spec: RunnerSpec, worker: data.Worker, job: data.Job,
                   output: OutputWriter | None, trace: JobTrace | None = None) -> Outcome:
    """Run the job in a runner host and turn every way it can end into an Outcome (traced: in
    a `job.run` span, and the host records its own)."""
    ref = spec.ref
    if ref is None:
        return _error(Status.FATAL_ERROR, f"runner {spec.name} is not available in this version")
    wd = worker.data
    timeout_ms = job.data.timeout
    run = pool.run_shared if spec.concurrent else pool.run
    with trio.move_on_after(timeout_ms / 1000 if timeout_ms else float("inf")) as scope:
        try:
            call = (ref, wd.runner_settings, job.data.args, worker.id.value, wd.use_static)
            on_emit = None if output is None else output.emit
            items = await (run(run_job, *call, on_emit=on_emit) if trace is None
                           else trace.call_host(run, spec.name, run_job, *call, on_emit=on_emit))
            return Outcome(Status.SUCCESS, list(items))
        except RunnerError as e:
            return _error(e.status, e.message)
        except HostCrashed as e:
            return _error(Status.ERROR_AND_RETRY, str(e))
        except Exception as e:
            return _error(Status.OTHER_ERROR, f"{type(e).__name__}: {e}")
    assert scope.cancelled_caught
    stopped = "its run was cancelled" if spec.concurrent else "the runner was killed"
    return _error(Status.ERROR_AND_RETRY, f"job timed out after {timeout_ms} ms; {stopped}")


async def _keep_claim(life: JobLifecycle, active: ActiveJob) -> None:
    """Renew the row's claim while the job runs, so only a dead process's claims expire."""
    repo = life.storage.repo
    while active.lease_until is not None:
        await trio.sleep(life.claim_lease_ms / 3000)
        renewed = now_ms() + life.claim_lease_ms
        if not await repo.claim_job(active.job_id, active.lease_until, renewed):
            return  # row deleted (the job was deleted) or taken over: nothing left to renew
        active.lease_until = renewed


def _deleted(job_id: int) -> Outcome:
    return _error(Status.CANCELLED, f"job {job_id} was deleted while it was running")


async def _run_attempt(ctx: ExecutorContext, pool: RunnerPool, active: ActiveJob, worker: data.Worker,
                       output: OutputWriter | None, trace: JobTrace | None = None) -> tuple[Outcome, int]:
    """Wait until due, run once; returns the outcome and the start time."""
    job = active.ticket.job
    life = ctx.lifecycle
    start = now_ms()
    outcome = _deleted(active.job_id)
    with active.scope:  # JobService.Delete cancels this scope
        await sleep_until_ms(job.data.run_after_time)
        await life.mark_running(active, worker)
        start = now_ms()
        spec = ctx.registry.get(worker.data.runner_id.value)
        if spec is None:
            outcome = _error(Status.FATAL_ERROR, f"runner {worker.data.runner_id.value} does not exist")
        elif active.lease_until is None:  # the common case: no row claim to keep alive
            outcome = await _perform(pool, spec, worker, job, output, trace)
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_keep_claim, life, active)
                outcome = await _perform(pool, spec, worker, job, output, trace)
                nursery.cancel_scope.cancel()
    if active.deleted:  # deleted while (or just as) it ran
        outcome = _deleted(active.job_id)
    return outcome, start


async def execute_job(ctx: ExecutorContext, pool: RunnerPool, active: ActiveJob,
                      on_ran: Callable[[], None] = lambda: None) -> None:
    """Run one taken job to its report; never raises for a job failure.

    Cancelled (a hard stop) or failing outside the runner (storage), the job is released so it
    runs again; the exception is logged, Cancelled re-raised. `on_ran` is called once the run is
    over (its runner host is free again), before the report.
    """
    life = ctx.lifecycle
    tracing = current_tracing()
    trace = None if tracing is None else tracing.job(active.ticket.extras)  # None: untraced
    try:
        if await life.skip_if_stale(active):
            return
        worker = await life.workers.get(active.ticket.job.data.worker_id.value)
        if worker is None:
            await life.drop(active, Status.FATAL_ERROR,
                            f"worker {active.ticket.job.data.worker_id.value} was deleted before job "
                            f"{active.job_id} ran")
            return
        if active.ticket.backed and active.lease_until is None and not await life.claim_backup_row(active):
            await life.let_go(active)
            return
        if trace is not None:
            trace.waited(active.ticket.job, worker, channel_of(cast(data.WorkerData, worker.data)))
        output = await open_output(life.storage, active.ticket)
        outcome, start = await _run_attempt(ctx, pool, active, worker, output, trace)
        on_ran()
        if trace is None:
            await _report(life, active, worker, outcome, start, now_ms(), output)
        else:
            with trace.delivering(outcome.status):
                await _report(life, active, worker, outcome, start, now_ms(), output, trace)
        ctx.stumbles.forget(active.job_id)
    except BaseException as exc:
        outage = is_outage(exc)
        if outage:  # storage is out: expected, and the channel's other jobs say the same; no traceback
            log.warning("job %s: storage unavailable (%s: %s); it goes back to run again", active.job_id,
                        type(exc).__name__, exc)
        elif not isinstance(exc, trio.Cancelled):
            log.exception("job %s: failed outside the runner; it goes back to run again", active.job_id)
        with trio.CancelScope(shield=True):
            try:
                if not (isinstance(exc, Exception) and not outage and await _gave_up(ctx, active, exc)):
                    await life.release(active)
            except Exception:
                log.exception("job %s: could not be released; it runs again when its lease ends", active.job_id)
        if not isinstance(exc, Exception):  # Cancelled, KeyboardInterrupt: not ours to swallow
            raise
        if outage:
            # Keep the slot a moment: the job just went back to its queue, and popping it again
            # at once while storage is still out would spin (hundreds of tries a second).
            await trio.sleep(OUTAGE_PAUSE_S)


async def _gave_up(ctx: ExecutorContext, active: ActiveJob, exc: Exception) -> bool:
    """End the job with FATAL_ERROR if its runs keep failing outside the runner; True if it was
    ended here. (A run that was already re-placed or ended before the failure is not counted.)"""
    if active.settled or ctx.stumbles.add(active.job_id) < GIVE_UP_AFTER:
        return False
    try:
        await ctx.lifecycle.give_up(active, f"job {active.job_id} failed outside its runner {GIVE_UP_AFTER} times "
                                            f"in a row; the last time: {type(exc).__name__}: {exc}")
    except Exception:
        log.exception("job %s: could not be ended after repeated failures; it goes back to run again",
                      active.job_id)
        return False
    ctx.stumbles.forget(active.job_id)
    return True


async def _report(life: JobLifecycle, active: ActiveJob, worker: data.Worker, outcome: Outcome, start: int,
                  end: int, output: OutputWriter | None = None, trace: JobTrace | None = None) -> None:
    """Fold the outcome into one report: retry, next periodic run, or the end of the job."""
    job = active.ticket.job
    wd = worker.data
    assert wd is not None  # a stored worker always has its data
    policy = wd.retry_policy
    if not active.deleted and retry.should_retry(outcome.status, policy, job.data.retried):
        assert policy is not None
        attempt = life.result_of(job, worker, outcome.status, outcome.items, start, end)
        if output is not None:  # this attempt's chunks land before the next attempt's
            await output.flush()
        await life.rerun(active, worker, retry.retry_job(job, policy, end), attempt, announce=False)
        return
    status = retry.final_status(outcome.status, policy, job.data.retried)
    result = life.result_of(job, worker, status, outcome.items, start, end)
    if output is not None:  # before the result is published: whoever has it has every chunk kept
        await output.end(result)
    if wd.periodic_interval and not active.deleted:
        nxt = periodic.next_periodic_run_ms(job.data.run_after_time, start, wd.periodic_interval, now_ms())
        await life.rerun(active, worker, periodic.next_run_job(job, nxt), result, announce=True)
    else:
        await life.finish(result, worker, active=active)
    if status == Status.SUCCESS and wd.next_workers:
        # The next jobs continue this job's trace (passed on as it is when this process does not trace).
        extras = trace_only(active.ticket.extras) if trace is None else trace.chain_extras()
        await life.start_chain(job, wd, outcome.items, extras)
