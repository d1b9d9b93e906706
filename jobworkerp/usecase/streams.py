"""JobStreamService operations: enqueue a job with its output streamed, and follow a job's output.

A follower subscribes to the job's result (the result bus, as Listen does) and to its output
stream (`storage/output_stream.py`) before it looks at anything, then hands over the chunks as
they come and, once the job's result is published, what is left of them and the result, last.
The result is what ends a follower, not the stream's end marker: a job that ends without a run
(deleted while queued, its worker gone) has none. The end marker is written before the result is
published, so when the result arrives every chunk kept is already readable.

The operations are async generators iterated from the gRPC front one step per trio hop
(`aio.iterate_trio`). Each step yields every item that is ready (a burst of a command's lines
crosses the bridge once, not once a line), and may run in a different trio task than the one
before, so no cancel scope or nursery is held across a `yield` (the waiting is done inside one
step, `_Following.next`).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import trio

from jobworkerp.errors import DeadlineExceeded, InvalidArgument, NotFound
from jobworkerp.lifecycle import retry
from jobworkerp.lifecycle.results import fill_worker_fields
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.ext import JobOutputItem, ListenStreamRequest
from jobworkerp.proto.jobworkerp.service import JobRequest
from jobworkerp.storage import Storage
from jobworkerp.storage.output_stream import OutputFeed
from jobworkerp.storage.pubsub import JobResultWaiter
from jobworkerp.tracing.carrier import Carrier
from jobworkerp.usecase.jobs import DIRECT_WAIT_GRACE_S, Jobs, undo
from jobworkerp.usecase.results import DEFAULT_LISTEN_TIMEOUT_MS
from jobworkerp.usecase.workers import Workers


@dataclass
class _Following:
    """One follower's state between the steps of its generator."""

    job_id: int
    waiter: JobResultWaiter
    feed: OutputFeed
    deadline: float  # trio time
    timeout_ms: float
    result: data.JobResult | None = None  # known at the start when the job had ended already
    done: bool = False

    async def next(self) -> list[JobOutputItem]:
        """The next items: chunks as they come; at the end, what is left and the result."""
        while not self.done:
            items = self.feed.take()
            if items:
                return items
            result = self.result if self.result is not None else self.waiter.result
            if result is not None:
                items = await self.feed.rest()
                items.append(JobOutputItem(end=result))
                self.done = True
                return items
            await self._wait()
        return []

    async def _wait(self) -> None:
        """Until the feed has chunks (or ended) or the result came; DeadlineExceeded past the
        deadline."""
        with trio.move_on_at(self.deadline) as scope:
            async with trio.open_nursery() as nursery:

                async def first(wait: Callable[[], Awaitable[object]]) -> None:
                    await wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(first, self.waiter.wait)
                if not self.feed.ended:
                    nursery.start_soon(first, self.feed.wait)
        if scope.cancelled_caught:
            raise DeadlineExceeded(f"job_id: no result for job {self.job_id} within {self.timeout_ms:.0f} ms")


class Streams:
    def __init__(self, storage: Storage, workers: Workers, jobs: Jobs) -> None:
        self._storage = storage
        self._workers = workers
        self._jobs = jobs

    async def enqueue_for_stream(self, req: JobRequest, client_trace: Carrier | None = None
                                 ) -> AsyncIterator[list[JobOutputItem]]:
        """Enqueue with the output streamed: the job's id, its chunks, then its result. A DIRECT
        job is waited for as Enqueue waits for it (at most its longest run), and deleted if the
        caller leaves first; other jobs are followed for at most a day, and go on without it."""
        async with AsyncExitStack() as stack:
            following: list[tuple[data.Job, data.Worker, JobResultWaiter, OutputFeed]] = []

            async def follow(job: data.Job, worker: data.Worker) -> None:
                job_id = job.id.value
                waiter = await stack.enter_async_context(self._storage.bus.listen_job(job_id))
                feed = await stack.enter_async_context(self._storage.output.follow(job_id))
                following.append((job, worker, waiter, feed))

            job_id, _ = await self._jobs.enqueue(req, client_trace, stream_output=True, before_place=follow)
            job, worker, waiter, feed = following[0]
            direct = worker.data.response_type == data.ResponseType.DIRECT
            if direct:
                longest = retry.longest_run_ms(worker.data.retry_policy, job.data.timeout)
                timeout_ms = math.inf if longest is None else longest + DIRECT_WAIT_GRACE_S * 1000
            else:
                timeout_ms = DEFAULT_LISTEN_TIMEOUT_MS
            state = _Following(job_id, waiter, feed, trio.current_time() + timeout_ms / 1000, timeout_ms)
            finished = False
            try:
                yield [JobOutputItem(job_id=data.JobId(value=job_id))]
                while items := await state.next():
                    yield items
                finished = True
            finally:
                if direct and not finished:  # caller gone or timed out: nobody gets the result
                    await undo(self._jobs.delete(job_id), f"delete of DIRECT job {job_id} whose caller left")

    async def listen_stream(self, req: ListenStreamRequest) -> AsyncIterator[list[JobOutputItem]]:
        """Follow a job by id: the chunks kept so far, the rest as they come, then its result."""
        if req.job_id is None or req.job_id.value == 0:
            raise InvalidArgument("job_id", "is required")
        job_id = req.job_id.value
        timeout_ms: float = DEFAULT_LISTEN_TIMEOUT_MS if req.timeout is None else req.timeout
        if timeout_ms == 0:
            timeout_ms = math.inf
        deadline = trio.current_time() + timeout_ms / 1000
        async with self._storage.bus.listen_job(job_id) as waiter, self._storage.output.follow(job_id) as feed:
            ended = None
            if await self._storage.status.get(job_id) is None:  # neither waiting nor running
                ended = await self._ended_result(job_id)
                if ended is None:
                    raise NotFound(f"job_id: job {job_id} neither waits nor runs, and has no result this server "
                                   f"can give")
            state = _Following(job_id, waiter, feed, deadline, timeout_ms, result=ended)
            while items := await state.next():
                yield items

    async def _ended_result(self, job_id: int) -> data.JobResult | None:
        """The final result of a job that has ended: as the output streams keep it (the result key
        in Redis, the ended stream in memory), else its stored row; None when there is neither."""
        result = await self._storage.output.ended_result(job_id)
        if result is None:
            stored = await self._storage.repo.latest_result_of_job(job_id)
            if stored is not None and stored.data.status != data.ResultStatus.ERROR_AND_RETRY:
                result = stored
        if result is None:
            return None
        return fill_worker_fields(result, await self._workers.get(result.data.worker_id.value))
