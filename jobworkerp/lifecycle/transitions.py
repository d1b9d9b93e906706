"""Every change of a job's state, each one function, used by every caller.

    accepted --accept--> queued | scheduled (row) | both (WITH_BACKUP)
    queued / scheduled --take--> taken (registered in RunningJobs, may be cancelled from here on)
    taken --mark_running--> RUNNING
    taken --rerun--> queued | scheduled again (a retry, or a periodic job's next run)
    taken --finish--> ended with exactly one final result (success, failure, CANCELLED, dropped)
    taken --release--> queued / claimable again (interrupted before it could end; runs again)
    queued / scheduled --delete--> ended with CANCELLED (or, when taken, cancelled there)

Callers (the executor, JobService.Delete, poisoned-job handling, restore and restart recovery)
never write a job's status, row, queue entry, uniq_key or result themselves: the order of those
writes is decided here once. The order is what keeps the promise that an accepted job ends with
exactly one result visible to its waiters, or stays visibly queued or scheduled:

* an ending stores the result and deletes the row first, then settles everything else in one
  atomic storage step (`JobSettler`), so a waiter that has the result never still sees the
  job's status or uniq_key, and a crash in between leaves a job that will run again rather than
  a job that is half gone;
* a re-run is placed (row and queue entry written) before the old queue entry is acknowledged,
  so a crash in between never loses the job; the old entry, returned to its queue by the
  crash, is let go unrun when popped again (`skip_if_stale`). When a re-run goes back to a
  queue, push and acknowledgement are one step, because the new copy has the same id and an
  acknowledgement landing after it was popped again would drop the new copy's in-flight
  record; when it leaves a row for a queue, the row stays (as a backup row) until that run ends;
* a transition that has begun runs to its end (`_uninterruptible`): a Delete whose caller
  hangs up, or a report cut off by a hard stop, must not stop between storing a job's result
  and deleting its row — the job would have a final result and still run again;
* where a job waits was decided at enqueue (`Ticket`), not re-derived from the worker's current
  definition, so worker updates cannot strand a job whose row or queue entry the new definition
  does not expect.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import ParamSpec, Protocol, TypeVar, cast

import trio

from jobworkerp.backoff import Backoff
from jobworkerp.clock import now_ms
from jobworkerp.errors import Unavailable, is_outage
from jobworkerp.ids import SnowflakeGenerator
from jobworkerp.lifecycle import chain
from jobworkerp.lifecycle.observer import UNOBSERVED, JobObserver
from jobworkerp.lifecycle.placement import Route, channel_of, needs_rdb_time, route
from jobworkerp.lifecycle.results import build_result, fill_worker_fields, should_store
from jobworkerp.lifecycle.running import ActiveJob, RunningJobs
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.ext import JobExtras
from jobworkerp.storage import Storage
from jobworkerp.storage.group_commit import GroupCommitWriter
from jobworkerp.storage.queue import Ticket, decode_extras, encode_extras
from jobworkerp.wire import encode
from jobworkerp.wire_decode import decode

log = logging.getLogger(__name__)

Status = data.ResultStatus
PENDING = data.JobStatus.PENDING
_FOREVER_MS = 1 << 62  # "due before the end of time": every waiting row
_PAGE = 500
RUNNING = data.JobStatus.RUNNING
TRANSITION_LIMIT_S = 60.0  # a begun transition runs to its end, unless storage hangs this long
ANNOUNCE_RETRY_PAUSES_S = (0.1, 0.3, 1.0)  # between tries of a periodic run's result announcement
IDEMPOTENT_RETRY_PAUSES_S = (0.1, 0.3, 1.0)  # between tries of an idempotent step after an error


P = ParamSpec("P")
T = TypeVar("T")


def _uninterruptible(transition: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Run a transition shielded from its caller's cancellation: cut between two of its storage
    steps, a job is left half ended (a CANCELLED result stored while its claimed row survives,
    and runs again once the claim lapses or the server restarts: soak seed 234165). Shielded,
    but not forever: storage that hangs (rather than fails) must not keep a stopping server up,
    so past TRANSITION_LIMIT_S the transition is abandoned as an outage, and what it left is
    the restart recovery's or the orphan sweep's to finish."""

    @functools.wraps(transition)
    async def shielded(*args: P.args, **kwargs: P.kwargs) -> T:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + TRANSITION_LIMIT_S) as scope:
            result = await transition(*args, **kwargs)
        if scope.cancelled_caught:
            raise Unavailable(f"{transition.__name__}: storage did not answer within {TRANSITION_LIMIT_S:.0f} s")
        return result

    return shielded


async def _through_outages(step: Callable[[], Awaitable[object]], *, idempotent: bool = False) -> None:
    """Run one storage step of a transition, waiting out a storage outage (Redis or the database
    restarting) with backoff; other errors, and the transition's own time limit, end it.

    An `idempotent` step (repeating it after it took effect changes nothing: an acknowledgement,
    a delete, a settle) is also tried again after other errors, IDEMPOTENT_RETRY_PAUSES_S apart:
    given up on, it leaves a job half ended — e.g. an unacknowledged queue entry of a job that
    was re-placed as a row, which a restart then queues again, so the job runs twice (soak seed
    798637)."""
    backoff = Backoff("job transition", log)
    pauses = list(IDEMPOTENT_RETRY_PAUSES_S) if idempotent else []
    while True:
        try:
            await step()
            return
        except Exception as e:
            if is_outage(e):
                await backoff.failed(e)
            elif pauses:
                log.warning("job transition step failed (%s: %s); trying it again", type(e).__name__, e)
                await trio.sleep(pauses.pop(0))
            else:
                raise


class WorkerSource(Protocol):
    """What the job path needs to know about workers (the use-case layer's cached lookup)."""

    async def get(self, worker_id: int) -> data.Worker | None: ...


class JobLifecycle:
    def __init__(self, storage: Storage, workers: WorkerSource, ids: SnowflakeGenerator, running: RunningJobs,
                 *, fetch_interval_ms: int, claim_lease_ms: int) -> None:
        self.storage = storage
        self.workers = workers
        self.ids = ids
        self.running = running
        self.fetch_interval_ms = fetch_interval_ms
        self.claim_lease_ms = claim_lease_ms
        # Looked up at each write, so the writer follows the repository the bundle holds.
        self._results: GroupCommitWriter[data.JobResult] = GroupCommitWriter(
            lambda results: storage.repo.add_results(results))
        # Called when a job was stored as a row due within the fetch window, so the local due-job
        # fetchers look now instead of at their next poll (set by the app; no-op without workers).
        self.on_due_soon: Callable[[], None] = lambda: None
        # Told of every job accepted, started, run and ended (the metrics, when they are on).
        self.observer: JobObserver = UNOBSERVED

    # --- accepted -> queued / scheduled ------------------------------------------------------
    async def accept(self, job: data.Job, worker: data.Worker, extras: JobExtras | None = None) -> Ticket:
        """Place a new job (client enqueue, next_workers chain); its uniq_key is already taken.
        `extras` stay with the job wherever it waits, through its retries and re-runs.

        On failure nothing of the job is left behind (no row, no status)."""
        ticket, _ = await self._place(job, worker, int(worker.data.queue_type), had_row=False, new=True,
                                      extras=extras)
        self.observer.enqueued(job, worker)
        return ticket

    async def _place(self, job: data.Job, worker: data.Worker, queue_type: int, *, had_row: bool,
                     new: bool, ack: bool = False, extras: JobExtras | None = None) -> tuple[Ticket, bool]:
        """Write the job where its route says. `ack` (a re-run of a popped job): acknowledge the
        previous run's queue entry with the push, when the job goes back to a queue. Returns the
        ticket and whether it was queued (i.e. whether `ack` was done)."""
        wd = worker.data
        assert wd is not None  # a stored worker always has its data
        jd = job.data
        now = now_ms()
        if jd.run_after_time == 0 and needs_rdb_time(wd, queue_type):
            jd.run_after_time = now
        where = route(wd, jd.run_after_time, now, self.fetch_interval_ms, queue_type)
        if had_row and where is Route.QUEUE:
            # A re-run leaving its row for a queue keeps the row, as a backup row, until that
            # run ends. Pushing and then deleting the row left both when the process died in
            # between: the queued copy ran, and the row — claimed by the dead process, so no
            # status — ran again once the claim lapsed, or, its worker deleted meanwhile, stayed
            # forever (soak seed 86872). Rewritten as a backup row first, a death before the push
            # leaves a stranded backup row (queued again by the orphan sweep or restart recovery).
            where = Route.RDB_AND_QUEUE
        ticket = Ticket(job, backed=where is Route.RDB_AND_QUEUE, queue_type=queue_type, extras=extras)
        repo = self.storage.repo
        pushed = False
        try:
            # The status first, so no place ever holds the job without it (confirmed for a new
            # job: once its enqueue is answered, a crash must not leave it without its status);
            # a failure before the job is placed leaves a re-run's previous run untouched. A new
            # job bound only for a queue has its status confirmed with the push's reply: the
            # write goes out ahead of the push, so it still lands first.
            confirm = None
            if new and where is Route.QUEUE:
                confirm = await self.storage.status.set_ahead(job.id.value, PENDING)
            if confirm is None:
                await self.storage.status.set(job.id.value, PENDING, confirm=new)
            if where.has_row:
                jd.grabbed_until_time = 0
                row = _backup_row(job) if where is Route.RDB_AND_QUEUE else job
                if new:
                    await repo.create_job(row, encode_extras(extras))
                else:
                    await repo.upsert_job(row, encode_extras(extras))
            if where.queued:
                await self.storage.queue.push(channel_of(wd), ticket, ack=ack)
                pushed = True
            if confirm is not None:
                await confirm()
        except BaseException:
            if new:  # refused as a whole: leave nothing of it behind (its caller gets the error)
                with trio.CancelScope(shield=True):
                    if pushed:  # queued, but its status write failed
                        await self.storage.queue.remove(job.id.value)
                    await self.storage.status.delete(job.id.value)
                    if where.has_row:
                        await repo.delete_job(job.id.value)
            raise
        if where is Route.RDB:
            if jd.run_after_time <= now + self.fetch_interval_ms:
                self.on_due_soon()
            if worker.id is not None and await repo.find_worker(worker.id.value) is None:
                # The worker was deleted while this row was written: the due-job fetchers only
                # look for rows of existing workers, so nothing would ever run it. End it now.
                await self.end_jobs_of_deleted_worker(worker.id.value)
        return ticket, where.queued

    async def restore(self, job: data.Job, worker: data.Worker) -> None:
        """Queue again a WITH_BACKUP job whose queue entry was lost (restart, Redis flushed),
        with the extras its row kept."""
        extras = decode_extras((await self.storage.repo.find_job_extras([job.id.value])).get(job.id.value))
        await self.storage.status.set(job.id.value, PENDING)
        await self.storage.queue.push(channel_of(cast(data.WorkerData, worker.data)),
                                      Ticket(job, backed=True, queue_type=int(data.QueueType.WITH_BACKUP),
                                             extras=extras))

    async def park(self, tickets: Sequence[Ticket]) -> int:
        """Keep queued jobs as database rows when their queue is about to vanish (a Standalone
        server stopping): restart recovery queues them again. Returns how many were parked."""
        repo = self.storage.repo
        for ticket in tickets:
            if not ticket.backed:  # a backed job has its row already
                await repo.upsert_job(_backup_row(ticket.job), encode_extras(ticket.extras))
        return len(tickets)

    # --- queued / scheduled -> taken ---------------------------------------------------------
    def take(self, ticket: Ticket, *, from_queue: bool, lease_until: int | None = None) -> ActiveJob:
        """Register a job this process just popped or claimed. Synchronous on purpose: called
        with no checkpoint after the pop / claim, so a Delete always finds the job somewhere."""
        active = ActiveJob(ticket, from_queue=from_queue, has_row=ticket.backed or lease_until is not None,
                           lease_until=lease_until)
        return self.running.add(active)

    async def claim_backup_row(self, active: ActiveJob) -> bool:
        """Take over the row of a popped WITH_BACKUP job (whoever held its claim is gone: the
        queue hands a job to one process at a time). False when the row is gone: the job was
        deleted after it was popped."""
        repo = self.storage.repo
        row = await repo.find_job(active.job_id)
        lease = now_ms() + self.claim_lease_ms
        if row is None or not await repo.claim_job(active.job_id, row.data.grabbed_until_time or 0, lease):
            return False
        active.lease_until = lease
        return True

    async def skip_if_stale(self, active: ActiveJob) -> bool:
        """A redelivered queue copy (its holder died) that must not run; True if it was let go.

        The dead holder may have got further than the queue knows: it placed the job's next run
        as a row (a retry, a periodic run) and died before acknowledging this copy, or that next
        run has even ended since — no status left. Running this copy would run an attempt twice
        and could give the job a second final result. Only a copy without a backup row is
        checked here: a backed copy claims its row before it runs, which settles the same
        question."""
        if not active.ticket.redelivered or active.ticket.backed:
            return False
        job_id = active.job_id
        live = await self.storage.status.get(job_id) is not None
        if live and await self.storage.repo.find_job(job_id) is None:
            return False  # still waits only in the queue: this copy is the job
        log.warning("job %s: its redelivered queue copy is stale (the job was placed again, or has ended, "
                    "since its dead holder took it); not run", job_id)
        if live and active.deleted:  # a Delete found this copy first and left the job to us
            await self.let_go(active)
            return True
        active.settled = True
        self.running.remove(active)
        await _through_outages(lambda: self.storage.queue.ack(job_id), idempotent=True)
        return True

    async def mark_running(self, active: ActiveJob, worker: data.Worker) -> None:
        await self.storage.status.set(active.job_id, RUNNING)
        active.running_on = channel_of(cast(data.WorkerData, worker.data))
        self.observer.started(active.ticket.job, worker)

    # --- taken -> queued / scheduled again ---------------------------------------------------
    @_uninterruptible
    async def rerun(self, active: ActiveJob, worker: data.Worker, again: data.Job, result: data.JobResult, *,
                    announce: bool) -> None:
        """A retry (`announce` False: the attempt's result is only stored when the flags say so)
        or a periodic job's next run (`announce` True: this run's result also goes to waiters
        and streams, but the job lives on: its status, row and uniq_key stay)."""
        wd = worker.data
        assert wd is not None  # a stored worker always has its data
        # A job taken from a row takes its worker's queue type (rows do not record one).
        queue_type = active.ticket.queue_type if active.from_queue else int(wd.queue_type)
        _, acked = await self._place(again, worker, queue_type, had_row=active.has_row, new=False,
                                     ack=active.from_queue, extras=active.ticket.extras)
        active.settled = True  # placed again: from here on nothing may release the old run
        self.running.remove(active)
        if active.running_on is not None:
            self.observer.ran(result, worker)
        try:
            # Stored once the next run is placed: if placing fails, the run is released and
            # repeats, and each attempt still has one stored result.
            if should_store(result.data.status, wd):
                await self._results.write(result)
            if active.from_queue and not acked:  # not queued again: no pop can take it before this lands
                await _through_outages(lambda: self.storage.queue.ack(active.job_id), idempotent=True)
            if announce:
                await self._announce(result, worker)
        finally:
            # Even when a step above failed: a Delete that arrived meanwhile relies on us to end
            # what was just placed (an injected ack fault here left a deleted job's status behind).
            if active.deleted:
                await self._end_deleted(active, requeued=acked)

    async def _announce(self, result: data.JobResult, worker: data.Worker) -> None:
        """Publish a periodic run's result to its waiters. The job lives on, so nothing would
        announce this run later: a publish that fails is tried again a few times before the
        error is let through (a DIRECT caller missed its result to one lost publish and waited
        until its deadline: soak seed 433140)."""
        for pause in (*ANNOUNCE_RETRY_PAUSES_S, None):
            try:
                await self.storage.bus.publish(result, to_job=True, to_worker=to_worker(worker))
                return
            except Exception as e:
                if pause is None:
                    raise
                log.warning("job %s: announcing its result failed (%s: %s); trying again", result.data.job_id.value,
                            type(e).__name__, e)
                await trio.sleep(pause)

    # --- taken / queued / scheduled -> ended ------------------------------------------------
    def result_of(self, job: data.Job, worker: data.Worker | None, status: data.ResultStatus, items: list[bytes],
                  start: int, end: int | None = None) -> data.JobResult:
        return build_result(self.ids.next_id(), job, worker, status, items, start, now_ms() if end is None else end)

    async def store_result(self, result: data.JobResult, worker: data.Worker | None) -> None:
        """Store a result when its worker's flags ask for it (unknown worker: not stored)."""
        if worker is not None and should_store(result.data.status, cast(data.WorkerData, worker.data)):
            await self._results.write(result)

    @_uninterruptible
    async def finish(self, result: data.JobResult, worker: data.Worker | None, *, active: ActiveJob | None = None,
                     delete_row: bool = False, ack: bool = False) -> None:
        """The one way a job ends: store the result when the worker's flags ask for it, delete
        the job's row, then settle status, uniq_key, queue entry and waiters in one step.

        Each step waits out a storage outage (up to TRANSITION_LIMIT_S): once the result is
        stored the job has ended, and giving up on the steps after it would leave a job with a
        final result that runs again (a MariaDB restart between storing a result and deleting
        the row did that)."""
        job_id = result.data.job_id.value
        await _through_outages(lambda: self.store_result(result, worker))
        if active is not None:
            delete_row = delete_row or active.has_row
        if delete_row:
            await _through_outages(lambda: self.storage.repo.delete_job(job_id), idempotent=True)
        ack = ack or (active is not None and active.from_queue)
        if active is not None:
            active.settled = True
            self.running.remove(active)
        await _through_outages(lambda: self.storage.settler.settle(job_id, result, to_worker=to_worker(worker),
                                                                    ack=ack), idempotent=True)
        if active is not None and active.running_on is not None:
            self.observer.ran(result, worker)
        self.observer.ended(result, worker)

    @_uninterruptible
    async def drop(self, active: ActiveJob, status: data.ResultStatus, reason: str) -> None:
        """End a taken job that cannot run (its worker is gone) with a result saying why."""
        log.warning("job %s dropped: %s", active.job_id, reason)
        now = now_ms()
        await self.finish(self.result_of(active.ticket.job, None, status, [reason.encode()], now, now), None,
                          active=active)

    @_uninterruptible
    async def give_up(self, active: ActiveJob, reason: str) -> None:
        """End a taken job whose runs keep failing outside its runner (the same error every
        time, not an outage) with FATAL_ERROR saying why, rather than run it again forever."""
        log.error("job %s gave up: %s", active.job_id, reason)
        active.running_on = None  # its run is over (its report failed): this ending is not a run's
        worker = await self.workers.get(active.ticket.job.data.worker_id.value)
        now = now_ms()
        await self.finish(self.result_of(active.ticket.job, worker, Status.FATAL_ERROR, [reason.encode()], now, now),
                          worker, active=active)

    @_uninterruptible
    async def fail_poisoned(self, ticket: Ticket, reason: str) -> None:
        """A job that kept killing the worker processes that ran it: end it as failed."""
        log.error("job %s gave up: %s", ticket.job_id, reason)
        worker = await self.workers.get(ticket.job.data.worker_id.value)
        now = now_ms()
        result = self.result_of(ticket.job, worker, Status.FATAL_ERROR, [reason.encode()], now, now)
        await self.finish(result, worker, delete_row=ticket.backed)

    @_uninterruptible
    async def end_jobs_of_deleted_worker(self, worker_id: int) -> int:
        """A deleted worker's jobs that wait as rows would never be claimed again: end each with
        FATAL_ERROR now. (Its queued jobs end the same way when they are popped, and a running
        one reports as usual.) Returns how many were ended here."""
        repo = self.storage.repo
        ended = 0
        while rows := await repo.find_due_jobs([worker_id], _FOREVER_MS, now_ms(), _PAGE):
            for job in rows:
                if not await repo.delete_job(job.id.value, grabbed_until=job.data.grabbed_until_time or 0):
                    continue  # claimed meanwhile: its claimer reports it
                now = now_ms()
                reason = f"worker {worker_id} was deleted before job {job.id.value} ran"
                await self.finish(self.result_of(job, None, Status.FATAL_ERROR, [reason.encode()], now, now), None)
                ended += 1
        return ended

    @_uninterruptible
    async def let_go(self, active: ActiveJob) -> None:
        """A popped job whose backup row is gone, so this copy must not run. Whoever took the row
        ends the job, and this copy only drops its own in-flight record — except when:

        * a Delete reached this process first: the job is ours to end, with CANCELLED;
        * the row went with the job's ending: `finish` stores the result and deletes the row
          before it settles, and a holder killed in between leaves the job's status and its
          in-flight record, which the reaper hands out again as this copy. Its stored result
          says the attempt ended: the ending is completed here, with that result. Dropping the
          status with this copy instead left a job that never answered its waiters (kill -9 of
          a worker, tests/scalable/test_multi_process.py).

        A status this copy does not end is left to whoever took the row (a Delete or a re-run
        putting the job back ends it itself); what nobody ends — its holder died with nothing
        stored, or another process's Delete left the ending to this copy and its cancel has not
        arrived — is the orphan sweep's (`lifecycle/orphans.py`), once nothing has held it for
        a grace period."""
        if active.deleted:
            active.has_row = False  # already deleted with the job
            now = now_ms()
            worker = await self.workers.get(active.ticket.job.data.worker_id.value)
            result = self.result_of(active.ticket.job, worker, Status.CANCELLED,
                                    [f"job {active.job_id} was deleted before it ran".encode()], now, now)
            await self.finish(result, worker, active=active)
            return
        job_id = active.job_id
        ended = None
        if await self.storage.status.get(job_id) is not None:  # not settled yet
            ended = await self._stored_ending(active.ticket.job)
        active.settled = True
        self.running.remove(active)
        if ended is not None:
            log.warning("job %s: its holder stored its result and deleted its row, then stopped before settling "
                        "it; settled here with that result", job_id)
            worker = await self.workers.get(ended.data.worker_id.value)
            result = fill_worker_fields(ended, worker)
            await _through_outages(lambda: self.storage.settler.settle(
                job_id, result, to_worker=to_worker(worker), ack=active.from_queue), idempotent=True)
            self.observer.ended(result, worker)
        elif active.from_queue:
            await _through_outages(lambda: self.storage.queue.ack(job_id), idempotent=True)

    async def settle_orphan(self, job_id: int, result: data.JobResult, worker: data.Worker | None) -> bool:
        """End a job the orphan sweep found abandoned (`lifecycle/orphans.py`) with `result`;
        False when it had ended meanwhile (concurrent sweeps of several processes end it once)."""
        if not await self.storage.settler.settle_orphan(job_id, result, to_worker=to_worker(worker)):
            return False
        self.observer.ended(result, worker)
        return True

    async def _stored_ending(self, job: data.Job) -> data.JobResult | None:
        """The final result stored for this attempt of the job (same retry count and due time:
        a periodic job's earlier runs do not count), if there is one."""
        jd = job.data
        for result in await self.storage.repo.list_results_by_job_id(job.id.value):
            rd = result.data
            if rd.status != Status.ERROR_AND_RETRY and rd.retried == jd.retried \
                    and rd.run_after_time == jd.run_after_time:
                return result
        return None

    # --- taken -> back where it was (interrupted) ----------------------------------------------
    @_uninterruptible
    async def release(self, active: ActiveJob) -> None:
        """The job's run was interrupted before it could end (shutdown, a storage error): give
        it back so it runs again, never acknowledge it as done. A no-op once it has ended."""
        if active.settled:
            return
        storage = self.storage
        # Still registered while it goes back, so a Delete meanwhile marks it instead of missing it.
        if active.lease_until is not None:
            try:
                await storage.repo.claim_job(active.job_id, active.lease_until, 0)  # claimable again at once
            except Exception as e:  # the claim then lapses by itself; a popper takes a backup row over anyway
                log.warning("job %s: claim not given back (%s: %s); it lapses after its lease", active.job_id,
                            type(e).__name__, e)
        try:
            await storage.status.set(active.job_id, PENDING)
        except Exception as e:  # informational: a failure must not keep the job from going back
            log.warning("job %s: status not reset to PENDING (%s: %s)", active.job_id, type(e).__name__, e)
        if active.from_queue:
            await storage.queue.release(active.job_id)
        active.settled = True
        self.running.remove(active)
        if active.deleted:  # deleted while it went back: end it where it now waits
            await self._end_deleted(active, requeued=active.from_queue)

    # --- next_workers --------------------------------------------------------------------------
    @_uninterruptible
    async def start_chain(self, job: data.Job, wd: data.WorkerData, items: Sequence[bytes],
                          extras: JobExtras | None = None) -> None:
        """Each output item becomes the args of one job for each next worker (missing workers are
        skipped). The finished job has its result already; a chain that cannot start is logged.
        `extras`: what each next job keeps (the trace context it continues)."""
        for next_id in wd.next_workers:
            nxt = await self.workers.get(next_id.value)
            if nxt is None:
                log.warning("job %s: next worker %s does not exist; skipped", job.id.value, next_id.value)
                continue
            for args in chain.chained_args(list(items)):
                chained = chain.chained_job(job, nxt, args, self.ids.next_id(), now_ms())
                try:
                    await self.accept(chained, nxt, extras)
                except Exception:
                    log.exception("job %s: could not start next worker %s; the rest of the chain is skipped",
                                  job.id.value, next_id.value)
                    return

    # --- queued / scheduled -> deleted -------------------------------------------------------
    @_uninterruptible
    async def delete(self, job_id: int) -> bool:
        """JobService.Delete: remove the job wherever it is. Exactly one party ends it: whoever
        takes it out of the place it waits in (its queue entry, or its unclaimed row) ends it
        here with CANCELLED; a job that is taken — registered here, claimed, or in flight in
        another process — is cancelled where it is, and its holder ends it."""
        storage = self.storage
        repo = storage.repo
        queued = await storage.queue.remove(job_id)
        if queued is not None:  # taken out of its queue by us: nobody else can have it
            await repo.delete_job(job_id)
            return await self._end_cancelled(queued.job)
        row = await repo.find_job(job_id)
        if self.running.cancel(job_id):  # taken here: its holder ends it
            await repo.delete_job(job_id)
            return True
        lease = 0 if row is None else row.data.grabbed_until_time or 0
        now = now_ms()
        if row is not None and not row.data.run_after_time and await storage.queue.held([job_id]):
            # A backup row whose job is queued (again: a re-run may have pushed it since we
            # looked) or in flight: the queue entry decides, not the row — a popper takes over
            # the row's claim, so claiming it here would not stop the job from running.
            queued = await storage.queue.remove(job_id)
            if queued is not None:
                await repo.delete_job(job_id)
                return await self._end_cancelled(queued.job)
        # An unclaimed row: claim it like a fetcher would (so exactly one of us wins), then end it.
        # Claimed rather than deleted first: a crash in between leaves a job that runs once its
        # lease ends, never a job gone without a result.
        elif row is not None and lease <= now and await repo.claim_job(job_id, lease, now + self.claim_lease_ms):
            return await self._end_cancelled(row, delete_row=True)
        if row is not None or storage.scalable and await storage.status.get(job_id) is not None:
            # Taken: claimed (by a fetcher of this process about to register it, or by another
            # process), or in flight in another process (a status, but no queue entry or row).
            await repo.delete_job(job_id)
            self.running.cancel_when_taken(job_id)
            if storage.scalable:
                await storage.worker_events.publish_job_cancel(job_id)
            return True
        return False

    async def _end_deleted(self, active: ActiveJob, *, requeued: bool) -> None:
        """A Delete reached a job while its holder was putting it back (a rerun, a release): the
        holder ends it, taking out what it just placed — unless a fetcher took that already (it
        can pop a re-queued job the moment it is pushed): then it is cancelled where it runs,
        and its new holder ends it, so the job still gets exactly one final result."""
        storage, repo, job_id = self.storage, self.storage.repo, active.job_id
        taken_back = await storage.queue.remove(job_id) is not None or await repo.delete_job(job_id, grabbed_until=0)
        if not taken_back and await storage.status.get(job_id) is None:
            # Taken by a fetcher and already ended there, with its own final result (it can run
            # to its end while we were still storing this attempt's result): nothing is left.
            return
        if not taken_back:  # not where it was placed: taken by a fetcher, or already gone with its row
            # A copy in flight counts only if the job went back to a queue: otherwise the only
            # in-flight record is our own previous run's (its ack may have failed).
            taken_back = (await repo.find_job(job_id) is None and self.running.get(job_id) is None
                          and not (requeued and await storage.queue.held([job_id])))
            if taken_back and await storage.status.get(job_id) is None:
                # Looked at again last: the copy a fetcher took can end while we look (its
                # settle drops status and in-flight record at once), and then nothing holds it
                # any more, yet it has its final result already (soak seed 294454).
                return
        if taken_back:
            await repo.delete_job(job_id)  # a backup row, if it had one
            # Not queued again: an in-flight record of this id can only be our previous run's
            # (its ack may have failed), and must go with the job.
            await self._end_cancelled(active.ticket.job, ack=active.from_queue and not requeued)
            return
        await repo.delete_job(job_id)
        self.running.cancel_when_taken(job_id)
        if storage.scalable:
            await storage.worker_events.publish_job_cancel(job_id)

    async def _end_cancelled(self, job: data.Job, *, delete_row: bool = False, ack: bool = False) -> bool:
        now = now_ms()
        worker = await self.workers.get(job.data.worker_id.value)
        reason = f"job {job.id.value} was deleted before it ran"
        result = self.result_of(job, worker, Status.CANCELLED, [reason.encode()], now, now)
        await self.finish(result, worker, delete_row=delete_row, ack=ack)
        return True


def _backup_row(job: data.Job) -> data.Job:
    """The row that backs a queued job. It says "instant" (run_after_time 0), so the due-job
    fetchers never also run a job that waits in a queue; the queued copy keeps its real time."""
    row = decode(data.Job, encode(job))
    row.data.run_after_time = 0
    row.data.grabbed_until_time = 0
    return row


def to_worker(worker: data.Worker | None) -> bool:
    """Results of DIRECT workers go to the caller only; others also to the worker's streams."""
    return worker is not None and worker.data.response_type != data.ResponseType.DIRECT
