"""JobService / JobStatusService operations: validate, build the job, hand it to the lifecycle
(which decides where it waits), find, and delete (which cancels it if it runs).

DIRECT enqueues wait for the result; the wait slot is opened before the job is queued, so a fast
job cannot finish unseen.
"""

from __future__ import annotations

import builtins
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol

import trio

from jobworkerp.clock import now_ms
from jobworkerp.config import MAX_JOB_TIMEOUT_MS, Config
from jobworkerp.errors import AlreadyExists, DeadlineExceeded, InvalidArgument, Unavailable
from jobworkerp.ids import SnowflakeGenerator
from jobworkerp.lifecycle import retry
from jobworkerp.lifecycle.placement import channel_of, route
from jobworkerp.lifecycle.transitions import JobLifecycle
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.ext import JobExtras
from jobworkerp.proto.jobworkerp.service import JobRequest
from jobworkerp.storage import Storage
from jobworkerp.storage.pubsub import EncodedResult, JobResultWaiter
from jobworkerp.tracing import current as current_tracing
from jobworkerp.tracing.carrier import Carrier, PassedOn
from jobworkerp.usecase.bulk import Batch
from jobworkerp.usecase.extras import job_extras
from jobworkerp.usecase.paging import page
from jobworkerp.usecase.queue_limit import QueueLimit
from jobworkerp.usecase.workers import Workers

log = logging.getLogger(__name__)

# Time values are stored as signed 64-bit integers (SQLite INTEGER, MySQL BIGINT) and have
# intervals added to them (a periodic job's next run): a uint64 timeout past 2**63, or a
# run_after_time near it, failed in storage instead of being refused. The bounds are far past
# any real use: ten years of timeout, and the last millisecond of the year 9999.
MAX_TIMEOUT_MS = MAX_JOB_TIMEOUT_MS
MAX_RUN_AFTER_TIME = 253_402_300_799_999
DIRECT_WAIT_GRACE_S = 5.0  # beyond the job timeout, for queueing and result hand-off
_PRIORITIES = {int(p) for p in data.Priority}
UNIQ_KEY_MAX_CHARS = 128  # job.uniq_key and job_result.uniq_key are VARCHAR(128) (storage/mysql_schema.py)
BeforePlace = Callable[[data.Job, data.Worker], Awaitable[None]]  # see Jobs.enqueue


class TraceOrigin(Protocol):
    """Where an accepted job's trace context comes from (jobworkerp/tracing/): the Enqueue's
    span, or, in a process that does not trace, the client's context passed on as it came."""

    def extras_for(self, job: data.Job, worker: data.Worker, channel: str) -> JobExtras: ...


class Jobs:
    def __init__(
        self,
        storage: Storage,
        workers: Workers,
        ids: SnowflakeGenerator,
        lifecycle: JobLifecycle,
        config: Config,
    ) -> None:
        self._storage = storage
        self._workers = workers
        self._ids = ids
        self._lifecycle = lifecycle
        self._config = config
        self._queue_limit = QueueLimit(storage.queue, config.job_queue_max_length)
        # Set when the server begins to stop (the app passes its stop event): from then on new
        # jobs are refused, so none is accepted after the queues were kept for the restart.
        self.stopping = trio.Event()

    def _build_job(self, req: JobRequest, worker: data.Worker) -> data.Job:
        run_after = req.run_after_time or 0
        if not 0 <= run_after <= MAX_RUN_AFTER_TIME:
            raise InvalidArgument("run_after_time", f"must be an epoch-ms time from 0 to {MAX_RUN_AFTER_TIME} "
                                                    f"(year 9999), got {run_after}")
        if req.uniq_key is not None and len(req.uniq_key) > UNIQ_KEY_MAX_CHARS:
            raise InvalidArgument("uniq_key", f"must be at most {UNIQ_KEY_MAX_CHARS} characters, "
                                              f"got {len(req.uniq_key)}")
        priority = data.Priority.MEDIUM if req.priority is None else req.priority
        if int(priority) not in _PRIORITIES:
            raise InvalidArgument("priority", f"unknown value {int(priority)}")
        timeout = self._config.job_default_timeout_ms if req.timeout is None else req.timeout
        if timeout > MAX_TIMEOUT_MS:
            raise InvalidArgument("timeout", f"must be at most {MAX_TIMEOUT_MS} ms (ten years; 0 = none), "
                                             f"got {timeout}")
        return data.Job(
            id=data.JobId(value=self._ids.next_id()),
            data=data.JobData(
                worker_id=worker.id,
                args=req.args,
                uniq_key=req.uniq_key,
                enqueue_time=now_ms(),
                run_after_time=run_after,
                retried=0,
                priority=priority,
                timeout=timeout,
            ),
        )

    def _refuse_if_stopping(self) -> None:
        if self.stopping.is_set():
            raise Unavailable("the server is stopping and accepts no new jobs; retry against a running server")

    async def enqueue(self, req: JobRequest, client_trace: Carrier | None = None, *, stream_output: bool = False,
                      before_place: BeforePlace | None = None) -> tuple[int, data.JobResult | EncodedResult | None]:
        """Accept a job; for DIRECT workers also wait for and return its result — as it came off the
        Redis bus, still encoded, when it came that way (to be passed on). `client_trace`:
        the trace context the client sent (jobworkerp/tracing/carrier.py).

        `stream_output`: the job's output is streamed (kept in its JobExtras, `usecase/extras.py`).
        `before_place(job, worker)` is awaited
        once the job is checked and built, right before it is placed: a caller that follows the
        job (streamed output, `usecase/streams.py`) subscribes there, so nothing the job publishes
        goes unseen. With it, waiting for a DIRECT job's result is left to that caller, and so is
        deleting the job if its client leaves first."""
        self._refuse_if_stopping()
        tracing = current_tracing()
        if tracing is None:
            worker = await self._workers.resolve(req.worker_id, req.worker_name)
            origin = None if client_trace is None else PassedOn(client_trace)
            return await self._enqueue_to(worker, req, origin, stream_output, before_place)
        with tracing.enqueue(client_trace) as trace:
            worker = await self._workers.resolve(req.worker_id, req.worker_name)
            return await self._enqueue_to(worker, req, trace, stream_output, before_place)

    async def enqueue_batch(self, reqs: Sequence[JobRequest], client_trace: Carrier | None = None
                            ) -> builtins.list[int | Exception]:
        """Accept many jobs: per item, in request order, its job id or the error the single
        Enqueue would have raised (usecase/bulk.py says what differs and why). Traced, the jobs
        of a batch share the batch's span as their parent."""
        batch = Batch(self._workers, self._config.job_enqueue_batch_max_items, reqs)
        tracing = current_tracing()
        if tracing is None:
            origin = None if client_trace is None else PassedOn(client_trace)
            return await batch.run(self._refuse_if_stopping, partial(self._enqueue_to, trace=origin))
        with tracing.enqueue(client_trace, items=len(reqs)) as trace:
            return await batch.run(self._refuse_if_stopping, partial(self._enqueue_to, trace=trace))

    async def _enqueue_to(self, worker: data.Worker, req: JobRequest, trace: TraceOrigin | None = None,
                          stream_output: bool = False, before_place: BeforePlace | None = None
                          ) -> tuple[int, data.JobResult | EncodedResult | None]:
        self._workers.check_args(worker, req.args)
        job = self._build_job(req, worker)
        if worker.data.response_type == data.ResponseType.DIRECT and job.data.run_after_time > 0:
            raise InvalidArgument("run_after_time", "DIRECT workers run jobs at once; run_after_time must be 0")
        wd = worker.data
        assert wd is not None  # a stored worker always has its data
        extras = job_extras(None if trace is None else trace.extras_for(job, worker, channel_of(wd)),
                            stream_output=stream_output)
        if route(wd, job.data.run_after_time, now_ms(), self._config.fetch_interval_ms, int(wd.queue_type)).queued:
            await self._queue_limit.admit(channel_of(wd))
        placed = False
        try:
            # Inside the try: a caller that goes away while the key is being taken must not
            # leave it held by a job that never existed (release only frees a key this job holds).
            await self._take_uniq_key(job)
            if before_place is not None:
                await before_place(job, worker)
            elif worker.data.response_type == data.ResponseType.DIRECT:
                # Subscribed before the job is placed, so its result cannot be published unseen.
                async with self._storage.bus.listen_direct(job.id.value) as waiter:
                    await self._lifecycle.accept(job, worker, extras)
                    placed = True
                    return job.id.value, await self._wait_direct(job, worker, waiter)
            await self._lifecycle.accept(job, worker, extras)
        except BaseException:
            # Once placed, the job holds its key until it ends (even a DIRECT job whose caller
            # left: it is deleted, and may still be running while that takes effect).
            if not placed:
                await undo(self._storage.uniq_keys.release(job.id.value),
                            f"release of job {job.id.value}'s uniq_key")
            raise
        return job.id.value, None

    async def _take_uniq_key(self, job: data.Job) -> None:
        key = job.data.uniq_key
        if key is not None:
            holder = await self._storage.uniq_keys.acquire(key, job.id.value)
            if holder is not None:
                raise AlreadyExists(f"uniq_key {key!r} is taken by job {holder}")

    async def _wait_direct(self, job: data.Job, worker: data.Worker, waiter: JobResultWaiter
                           ) -> data.JobResult | EncodedResult:
        job_id = job.id.value
        # Through every retry: the caller waits for the final result, not the first attempt's.
        longest = retry.longest_run_ms(worker.data.retry_policy, job.data.timeout)
        wait_s = math.inf if longest is None else longest / 1000 + DIRECT_WAIT_GRACE_S
        finished = False
        try:
            with trio.move_on_after(wait_s):
                result = await waiter.wait_delivered()
                finished = True
                return result
            raise DeadlineExceeded(f"job {job_id}: no result within {longest} ms (timeout {job.data.timeout} ms "
                                   f"per attempt, with retries)")
        finally:
            if not finished:  # caller gone or timed out: nobody can receive the result any more
                await undo(self.delete(job_id), f"delete of DIRECT job {job_id} whose caller left")

    async def find(self, job_id: int) -> data.Job | None:
        """Where it waits or runs: its row (scheduled, backed up), its queue entry, or this
        process's taken jobs."""
        job = await self._storage.repo.find_job(job_id)
        if job is not None:
            return job
        active = self._lifecycle.running.get(job_id)
        if active is not None:
            return active.ticket.job
        queued = await self._storage.queue.find(job_id)
        return None if queued is None else queued.job

    async def list(self, limit: int | None, offset: int | None) -> list[data.Job]:
        return await self._storage.repo.list_jobs(*page(limit, offset))

    async def count(self) -> int:
        return await self._storage.repo.count_jobs()

    async def delete(self, job_id: int) -> bool:
        """Remove a job wherever it is (queue, row) and cancel it when it runs; its waiters get
        a CANCELLED result."""
        return await self._lifecycle.delete(job_id)

    async def status(self, job_id: int) -> data.JobStatus | None:
        return await self._storage.status.get(job_id)

    async def all_statuses(self) -> builtins.list[tuple[int, data.JobStatus]]:  # (`list` is a method here)
        return await self._storage.status.all()


UNDO_TIMEOUT_S = 5.0


async def undo(step: Awaitable[object], what: str) -> None:
    """Clean up after a request that failed or was cancelled: shielded (the caller's cancel must
    not skip it) but bounded, and never raising — the request already has its outcome, and
    storage that cannot be reached (a server stopping, an outage) must not turn a cancelled
    request into a crash. What is left behind is ended by the orphan sweep (Scalable) or dies
    with the process (Standalone)."""
    with trio.move_on_after(UNDO_TIMEOUT_S) as scope:
        scope.shield = True
        try:
            await step
        except Exception as e:
            log.warning("%s failed: %s: %s", what, type(e).__name__, e)
            return
    if scope.cancelled_caught:
        log.warning("%s gave up after %.0f s", what, UNDO_TIMEOUT_S)
