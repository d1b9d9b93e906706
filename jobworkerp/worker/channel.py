"""One channel of this worker process: two fetchers feeding at most `concurrency` running jobs.

    ChannelWorker.run
    └── jobs nursery: every running job of the channel lives here
        └── channel Supervisor (one_for_one): restarts a fetcher that crashed, alone
            ├── queue fetcher: slot -> pop the channel's queue -> take -> start the job
            └── due fetcher:   due rows? -> slot -> claim rows -> take -> start the jobs

The running jobs belong to the nursery *above* the supervisor, so a fetcher that crashes (a
storage error on pop or on a claim) is restarted without cancelling the jobs it had started.
Both fetchers share the channel's `Slots`: a slot is held by a running job, or lent to a fetcher
that waits for work and given up when the other fetcher needs it.

Shutdown is graceful: `stop()` ends both fetchers, and `run()` returns once the jobs already
running have finished and reported.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import trio

from actors.supervisor import ChildSpec, Supervisor
from jobworkerp.backoff import Backoff
from jobworkerp.clock import now_ms
from jobworkerp.config import ChannelConfig
from jobworkerp.errors import is_outage
from jobworkerp.joblog import job_context
from jobworkerp.lifecycle.running import ActiveJob
from jobworkerp.storage.queue import BatchPop, Ticket, decode_extras
from jobworkerp.tracing.carrier import trace_id_of
from jobworkerp.worker.executor import ExecutorContext, RunnerPool, execute_job
from jobworkerp.worker.slots import Slots

log = logging.getLogger(__name__)

# Fetchers are restarted at once after a crash, up to this many times in FETCHER_RESTART_WINDOW_S;
# beyond that the channel gives up and escalates (storage is down for good, not blinking).
FETCHER_MAX_RESTARTS = 10
FETCHER_RESTART_WINDOW_S = 10.0
POP_BATCH = 16  # most jobs one look at a `BatchPop` queue takes (bounded by the free slots)


async def _let_started_jobs_go_first() -> None:
    """Two scheduling rounds, so that the jobs this fetcher just started take their first step
    (up to their runner host call) before it sets up its next wait — for a `BatchPop` queue
    (Redis) a wake-up-and-pop round trip that cost ~160 us of the main thread, which at low load
    sat on every job's path between its pop and its run.

    A task started in this step runs in the next scheduling batch; trio runs a batch in a random
    order, so one checkpoint would let the jobs go first only half the time. After two, the
    fetcher's next step is at least one batch after theirs."""
    await trio.lowlevel.checkpoint()
    await trio.lowlevel.checkpoint()
FETCH_YIELD_EVERY = 16  # most fetcher turns in a row that take a free slot without yielding

WorkerIdsOnChannel = Callable[[str], Awaitable[list[int]]]


class ChannelWorker:
    def __init__(self, channel: ChannelConfig, ctx: ExecutorContext, pool: RunnerPool,
                 worker_ids_on: WorkerIdsOnChannel) -> None:
        self.channel = channel
        self._ctx = ctx
        self._life = ctx.lifecycle
        self._pool = pool
        self._worker_ids_on = worker_ids_on
        self.slots = Slots(channel.concurrency)
        # Jobs that have run and are reporting (storing, settling) without a slot: as many as
        # there are slots, so storage that is slow to take reports still holds the channel back.
        self._reporting = trio.Semaphore(channel.concurrency)
        self._jobs: trio.Nursery | None = None
        self._fetch_scopes: set[trio.CancelScope] = set()
        self._stopped = False
        self._due_wake = trio.Event()

    @property
    def name(self) -> str:
        return self.channel.name

    def stop(self) -> None:
        """Stop fetching; running jobs finish."""
        self._stopped = True
        for scope in self._fetch_scopes:
            scope.cancel()

    def wake(self) -> None:
        """Look for due rows now rather than at the next poll (one was just stored)."""
        self._due_wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        fetchers = Supervisor(
            [ChildSpec("queue", self._fetch_queue, restart="transient"),
             ChildSpec("due", self._fetch_due, restart="transient")],
            max_restarts=FETCHER_MAX_RESTARTS, max_seconds=FETCHER_RESTART_WINDOW_S, name=f"channel:{self.name}",
        )
        async with trio.open_nursery() as jobs:
            self._jobs = jobs
            await jobs.start(fetchers.run)
            task_status.started()

    # --- starting a job ----------------------------------------------------------------------
    def _start(self, active: ActiveJob) -> None:
        """Run a taken job in a slot the caller holds; the job gives the slot back when it ends."""
        assert self._jobs is not None
        self._jobs.start_soon(self._run_one, active)

    async def _run_one(self, active: ActiveJob) -> None:
        """Run the job; its slot goes back once the run is over, while the job still reports.

        The report is storage round trips (Scalable: the settle, after the status write the
        run started with); holding the slot through them left the runner host idle for as
        long, which halved a Scalable worker's throughput of short jobs."""
        reporting = False

        def ran() -> None:
            nonlocal reporting
            try:
                self._reporting.acquire_nowait()
            except trio.WouldBlock:
                return  # as many jobs report already: this one keeps its slot until it has too
            reporting = True
            self.slots.release()

        try:
            # Every log line of this job's task carries its fields in JSON logs (joblog.py).
            with job_context(active.job_id, active.ticket.job.data.worker_id.value, self.name,
                             trace_id_of(active.ticket.extras)):
                log.debug("job %s: starting", active.job_id)
                await execute_job(self._ctx, self._pool, active, ran)
                log.debug("job %s: done", active.job_id)
        finally:
            if reporting:
                self._reporting.release()
            else:
                self.slots.release()

    # --- fetchers ------------------------------------------------------------------------------
    async def _fetch_queue(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Take a slot, then a job from the channel's queue, then start it; repeat.

        A queue whose every look is a round trip (`BatchPop`: Redis) is read for as many jobs as
        there are free slots (at most POP_BATCH) at once, and after a look that left it empty
        the fetcher waits for a push's wake-up rather than look again: a look per job, and an
        empty one between jobs, were most of a Scalable worker's Redis round trips."""
        queue = self._life.storage.queue
        batch = queue if isinstance(queue, BatchPop) else None
        most = min(POP_BATCH, self.channel.concurrency)
        backoff = Backoff(f"channel {self.name!r} queue fetcher", log)
        drained = False  # the last look left the queue empty
        unyielding = 0  # turns in a row that took a free slot without yielding to the scheduler
        with self._fetch_scope():
            task_status.started()
            while not self._stopped:
                # A free slot is taken at once: `acquire` always yields first, a scheduling round
                # per job at low load. A turn that then finds the queue empty waits (yields)
                # anyway; a long run of turns that all find work yields every FETCH_YIELD_EVERY.
                if unyielding < FETCH_YIELD_EVERY and self.slots.take_free(1):
                    unyielding += 1
                else:
                    await self.slots.acquire()
                    unyielding = 0
                held = 1
                tickets: list[Ticket] = []
                outage: Exception | None = None
                try:
                    # Work that is already queued is taken at once; only the wait for more is
                    # idle, and may be pre-empted by the due fetcher.
                    if batch is not None and not drained:
                        held += self.slots.take_free(most - 1)
                        tickets, drained = await batch.try_pop_many(self.name, held)
                    elif not drained:
                        ticket = await queue.try_pop(self.name)
                        tickets = [] if ticket is None else [ticket]
                    if not tickets:
                        self.slots.release(held - 1)
                        held, drained = 1, False
                        unyielding = 0  # the wait below yields
                        with self.slots.idle():
                            if batch is not None:
                                ticket, drained = await batch.pop_reporting(self.name, found_empty=True)
                                tickets = [ticket]
                            else:
                                tickets = [await queue.pop(self.name, found_empty=True)]
                except Exception as e:
                    if not is_outage(e):
                        raise  # a bug: the supervisor restarts this fetcher
                    outage = e
                finally:
                    # Pre-empted, stopped or failed: the slots not used by a job go back.
                    self.slots.release(held - len(tickets))
                if outage is not None:  # storage is out: wait it out here, running jobs go on
                    await backoff.failed(outage)
                    continue
                backoff.succeeded()
                for ticket in tickets:
                    self._start(self._life.take(ticket, from_queue=True))
                if batch is not None and drained and tickets:
                    await _let_started_jobs_go_first()

    async def _fetch_due(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Every fetch interval (or when woken), claim the rows of this channel that are due
        within the interval into free slots; the executor waits until each one's time."""
        interval_s = self._life.fetch_interval_ms / 1000
        backoff = Backoff(f"channel {self.name!r} due-job fetcher", log)
        with self._fetch_scope():
            task_status.started()
            while not self._stopped:
                self._due_wake = trio.Event()
                try:
                    started = await self._take_due()
                except Exception as e:
                    if not is_outage(e):
                        raise  # a bug: the supervisor restarts this fetcher
                    await backoff.failed(e)
                    continue
                backoff.succeeded()
                if started:
                    continue  # more may be due already
                with trio.move_on_after(interval_s):
                    await self._due_wake.wait()

    async def _take_due(self) -> int:
        """Claim due rows into slots; returns how many jobs were started."""
        life = self._life
        worker_ids = await self._worker_ids_on(self.name)
        if not worker_ids:
            return 0
        now = now_ms()
        due = await life.storage.repo.find_due_jobs(worker_ids, now + life.fetch_interval_ms, now,
                                                    self.channel.concurrency)
        if not due:
            return 0
        await self.slots.acquire()  # our turn, pre-empting an idle queue fetcher
        held = 1 + self.slots.take_free(len(due) - 1)
        started = 0
        try:
            extras = await life.storage.repo.find_job_extras([job.id.value for job in due[:held]])
            for job in due:
                if held == 0:
                    break
                if life.running.get(job.id.value) is not None:
                    # Ours and still running: its claim lapsed because the renewal lags (a
                    # loaded machine), not because we died. Claimed again, it would run twice.
                    continue
                # The lease covers the wait until run_after_time (at most one interval) too.
                lease = now_ms() + life.fetch_interval_ms + life.claim_lease_ms
                # The row as read: it may have been re-run (rewritten, lease 0) while we waited.
                if await life.storage.repo.claim_job(job.id.value, job.data.grabbed_until_time or 0, lease,
                                                     run_after_time=job.data.run_after_time):
                    job.data.grabbed_until_time = lease
                    ticket = Ticket(job, extras=decode_extras(extras.get(job.id.value)))
                    self._start(life.take(ticket, from_queue=False, lease_until=lease))
                    held -= 1
                    started += 1
        finally:
            self.slots.release(held)
        return started

    @contextmanager
    def _fetch_scope(self) -> Iterator[trio.CancelScope]:
        """A scope `stop()` cancels, registered for as long as the fetcher runs."""
        scope = trio.CancelScope()
        if self._stopped:
            scope.cancel()
        self._fetch_scopes.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._fetch_scopes.discard(scope)
