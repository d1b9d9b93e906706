"""Result notifications: who is waiting for a job's result, and who streams a worker's results.

A listener subscribes *before* it checks storage, so a result published in between is never
missed. Subscriptions are context managers and are removed on exit, so finished or abandoned
waits leave nothing behind (upstream's Standalone mode leaked one channel per job).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import trio

from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.worker_stream import StreamBounds, WorkerResultStream
from jobworkerp.wire import Encoded
from jobworkerp.wire_decode import decode

log = logging.getLogger(__name__)


class EncodedResult(Encoded):
    """A final result as the JobResult bytes it crossed the Redis bus in, for a waiter that only
    passes it on: the DIRECT Enqueue answers with these bytes (usecase/jobs.py, front/services.py)
    and nothing decodes them unless someone reads the result."""

    __slots__ = ()

    def decoded(self) -> data.JobResult:
        return decode(data.JobResult, self.data)


class JobResultWaiter:
    """One pending wait for the final result of one job."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self.delivered: data.JobResult | EncodedResult | None = None

    @property
    def result(self) -> data.JobResult | None:
        """The delivered result, decoded (once) if it came as bytes."""
        delivered = self.delivered
        if isinstance(delivered, EncodedResult):
            self.delivered = delivered = delivered.decoded()
        return delivered

    def deliver(self, result: data.JobResult | EncodedResult) -> None:
        if self.delivered is None:
            self.delivered = result
            self._event.set()

    async def wait_delivered(self) -> data.JobResult | EncodedResult:
        """The result as it was delivered: for a caller that can pass bytes on undecoded."""
        await self._event.wait()
        assert self.delivered is not None
        return self.delivered

    async def wait(self) -> data.JobResult:
        await self.wait_delivered()
        result = self.result
        assert result is not None
        return result


class ResultBus(Protocol):
    def listen_job(self, job_id: int) -> AbstractAsyncContextManager[JobResultWaiter]: ...

    def listen_direct(self, job_id: int) -> AbstractAsyncContextManager[JobResultWaiter]:
        """`listen_job` for the caller of a DIRECT job, entered right before the job is placed
        (a bus may route the result to this process instead of subscribing: redis_bus.py)."""
        ...

    def listen_worker(self, worker_id: int) -> AbstractAsyncContextManager[WorkerResultStream]: ...

    async def publish(self, result: data.JobResult, *, to_job: bool, to_worker: bool) -> None: ...

    async def routed_jobs(self) -> list[int]:
        """Jobs whose results are routed to a DIRECT caller (for the orphan sweep)."""
        ...

    async def drop_route(self, job_id: int) -> None:
        """Forget a job's route (its job is gone without a settle to drop it)."""
        ...


def deliver_to_streams(streams: set[WorkerResultStream], result: data.JobResult, topic: object) -> None:
    """Offer `result` to every subscriber of one worker; drop those cut off (too far behind: their
    stream ends with RESOURCE_EXHAUSTED, `worker_stream`) or gone."""
    for stream in list(streams):
        if not stream.offer(result):
            streams.discard(stream)
            if stream.overflow is not None:
                log.warning("result stream of %s: a subscriber fell too far behind and was cut off", topic)


class MemoryResultBus:
    """In-process fan-out of final results to job waiters and worker streams."""

    def __init__(self, stream_bounds: StreamBounds | None = None) -> None:
        self._job_waiters: dict[int, set[JobResultWaiter]] = {}
        self._worker_streams: dict[int, set[WorkerResultStream]] = {}
        self._stream_bounds = stream_bounds or StreamBounds()

    @asynccontextmanager
    async def listen_job(self, job_id: int) -> AsyncIterator[JobResultWaiter]:
        waiter = JobResultWaiter()
        self._job_waiters.setdefault(job_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._job_waiters.get(job_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._job_waiters[job_id]

    def listen_direct(self, job_id: int) -> AbstractAsyncContextManager[JobResultWaiter]:
        return self.listen_job(job_id)

    @asynccontextmanager
    async def listen_worker(self, worker_id: int) -> AsyncIterator[WorkerResultStream]:
        stream = WorkerResultStream(worker_id, self._stream_bounds)
        self._worker_streams.setdefault(worker_id, set()).add(stream)
        try:
            yield stream
        finally:
            streams = self._worker_streams.get(worker_id)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._worker_streams[worker_id]
            stream.close()
            log.debug("worker %s result stream unsubscribed", worker_id)

    async def publish(self, result: data.JobResult, *, to_job: bool, to_worker: bool) -> None:
        self.publish_nowait(result, to_job=to_job, to_worker=to_worker)

    async def routed_jobs(self) -> list[int]:
        return []  # waiters are in this process: nothing to route

    async def drop_route(self, job_id: int) -> None:
        return None

    def publish_nowait(self, result: data.JobResult, *, to_job: bool, to_worker: bool) -> None:
        rd = result.data
        if to_job:
            for waiter in self._job_waiters.get(rd.job_id.value, ()):
                waiter.deliver(result)
        if to_worker:
            streams = self._worker_streams.get(rd.worker_id.value)
            if streams:
                deliver_to_streams(streams, result, f"worker {rd.worker_id.value}")
