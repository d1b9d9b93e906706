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

log = logging.getLogger(__name__)

# How many results a slow worker-stream subscriber may fall behind before it is cut off.
WORKER_STREAM_BUFFER = 10_000


class JobResultWaiter:
    """One pending wait for the final result of one job."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self.result: data.JobResult | None = None

    def deliver(self, result: data.JobResult) -> None:
        if self.result is None:
            self.result = result
            self._event.set()

    async def wait(self) -> data.JobResult:
        await self._event.wait()
        assert self.result is not None
        return self.result


class ResultBus(Protocol):
    def listen_job(self, job_id: int) -> AbstractAsyncContextManager[JobResultWaiter]: ...

    def listen_worker(self, worker_id: int) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[data.JobResult]]:
        ...

    async def publish(self, result: data.JobResult, *, to_job: bool, to_worker: bool) -> None: ...


class MemoryResultBus:
    """In-process fan-out of final results to job waiters and worker streams."""

    def __init__(self) -> None:
        self._job_waiters: dict[int, set[JobResultWaiter]] = {}
        self._worker_streams: dict[int, set[trio.MemorySendChannel[data.JobResult]]] = {}

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

    @asynccontextmanager
    async def listen_worker(self, worker_id: int) -> AsyncIterator[trio.MemoryReceiveChannel[data.JobResult]]:
        send, receive = trio.open_memory_channel[data.JobResult](WORKER_STREAM_BUFFER)
        self._worker_streams.setdefault(worker_id, set()).add(send)
        try:
            yield receive
        finally:
            streams = self._worker_streams.get(worker_id)
            if streams is not None:
                streams.discard(send)
                if not streams:
                    del self._worker_streams[worker_id]
            send.close()
            receive.close()
            log.debug("worker %s result stream unsubscribed", worker_id)

    async def publish(self, result: data.JobResult, *, to_job: bool, to_worker: bool) -> None:
        self.publish_nowait(result, to_job=to_job, to_worker=to_worker)

    def publish_nowait(self, result: data.JobResult, *, to_job: bool, to_worker: bool) -> None:
        rd = result.data
        if to_job:
            for waiter in self._job_waiters.get(rd.job_id.value, ()):
                waiter.deliver(result)
        if to_worker:
            for send in list(self._worker_streams.get(rd.worker_id.value, ())):
                try:
                    send.send_nowait(result)
                except trio.WouldBlock:
                    log.warning("worker %s result stream subscriber is %d results behind; closing it",
                                rd.worker_id.value, WORKER_STREAM_BUFFER)
                    send.close()
                    self._worker_streams[rd.worker_id.value].discard(send)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._worker_streams[rd.worker_id.value].discard(send)
