"""`BlockingClient`: the same client for synchronous code (scripts, notebooks, sync frameworks).

It runs an asyncio event loop on a background thread for its whole life and hands every call to
it (`run_coroutine_threadsafe`), so one connection serves all calls, and it works where an event
loop is already running on the calling thread (Jupyter), where `asyncio.run` per call would not.
A call interrupted on the calling thread (Ctrl-C) cancels its coroutine on the loop. Methods and
arguments are the `Client`'s, without `await`.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar, overload

from jobworkerp.client.catalog import WorkerRef
from jobworkerp.client.client import (
    DEFAULT_ADDRESS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    Client,
    Priority,
    QueueType,
    ResponseType,
)
from jobworkerp.client.connection import TlsFiles
from jobworkerp.client.errors import ClientError
from jobworkerp.client.jobs import JobHandle
from jobworkerp.client.models import JobResult, RetryPolicy, Runner, Worker

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


class _LoopThread:
    """An asyncio loop running on a daemon thread until `stop`."""

    def __init__(self) -> None:
        self.loop = _plain_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="jobworkerp-client", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # interrupted here (KeyboardInterrupt): stop the call there too
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


def _plain_loop() -> asyncio.AbstractEventLoop:
    """The platform's standard loop, made directly rather than by `asyncio.new_event_loop()`: once
    a program has imported trio-asyncio, that asks trio-asyncio's policy, whose loops cannot be run
    forever on a thread of their own like this one."""
    proactor = getattr(asyncio, "ProactorEventLoop", None) if sys.platform == "win32" else None
    return proactor() if proactor is not None else asyncio.SelectorEventLoop()


class BlockingJobHandle:
    """`JobHandle` for synchronous code."""

    def __init__(self, handle: JobHandle, loop: _LoopThread) -> None:
        self._handle = handle
        self._loop = loop
        self.job_id = handle.job_id
        self.worker = handle.worker

    def __repr__(self) -> str:
        return f"BlockingJobHandle(job_id={self.job_id}, worker={self.worker.name!r})"

    def result(self, timeout: float | None = None) -> JobResult:
        return self._loop.run(self._handle.result(timeout))

    def status(self) -> str | None:
        return self._loop.run(self._handle.status())

    def cancel(self) -> bool:
        return self._loop.run(self._handle.cancel())


class BlockingClient:
    """`Client` for synchronous code: `with BlockingClient(address) as client: client.run(...)`."""

    def __init__(self, address: str = DEFAULT_ADDRESS, token: str | None = None, tls: TlsFiles | None = None, *,
                 timeout: float | None = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES) -> None:
        self._client = Client(address, token, tls, timeout=timeout, retries=retries)
        self._loop: _LoopThread | None = None

    def __enter__(self) -> BlockingClient:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        """Connect (for use without `with`; then call `close()`)."""
        if self._loop is None:
            loop = _LoopThread()
            try:
                loop.run(self._client.__aenter__())
            except BaseException:
                loop.stop()
                raise
            self._loop = loop

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            try:
                loop.run(self._client.close())
            finally:
                loop.stop()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise ClientError("the client is not open: use `with BlockingClient(...) as client`")
        return self._loop.run(coro)

    def _handle(self, handle: JobHandle) -> BlockingJobHandle:
        assert self._loop is not None
        return BlockingJobHandle(handle, self._loop)

    # runners and workers

    def runners(self) -> list[Runner]:
        return self._run(self._client.runners())

    def runner(self, ref: str | int) -> Runner:
        return self._run(self._client.runner(ref))

    def create_worker(
        self, name: str, runner: str | int = "COMMAND", settings: Any = None, *,
        response_type: ResponseType = "DIRECT", queue_type: QueueType = "NORMAL", channel: str | None = None,
        periodic_interval_ms: int = 0, store_success: bool | None = None, store_failure: bool | None = None,
        use_static: bool = False, next_workers: Iterable[WorkerRef] = (), retry: RetryPolicy | None = None,
    ) -> Worker:
        return self._run(self._client.create_worker(
            name, runner, settings, response_type=response_type, queue_type=queue_type, channel=channel,
            periodic_interval_ms=periodic_interval_ms, store_success=store_success, store_failure=store_failure,
            use_static=use_static, next_workers=next_workers, retry=retry))

    def get_worker(self, worker: WorkerRef) -> Worker:
        return self._run(self._client.get_worker(worker))

    def update_worker(self, worker: WorkerRef, **changes: Any) -> Worker:
        """The keyword options of `Client.update_worker`."""
        return self._run(self._client.update_worker(worker, **changes))

    def delete_worker(self, worker: WorkerRef) -> bool:
        return self._run(self._client.delete_worker(worker))

    # jobs

    def run(self, worker: WorkerRef, args: Any = None, *, timeout: float | None = None,
            priority: Priority | None = None, uniq_key: str | None = None,
            job_timeout: float | None = None) -> list[Any]:
        return self._run(self._client.run(worker, args, timeout=timeout, priority=priority, uniq_key=uniq_key,
                                          job_timeout=job_timeout))

    def enqueue(self, worker: WorkerRef, args: Any = None, *, run_after: datetime | timedelta | None = None,
                priority: Priority | None = None, uniq_key: str | None = None,
                job_timeout: float | None = None) -> BlockingJobHandle:
        return self._handle(self._run(self._client.enqueue(worker, args, run_after=run_after, priority=priority,
                                                           uniq_key=uniq_key, job_timeout=job_timeout)))

    def enqueue_many(self, worker: WorkerRef, many_args: Sequence[Any], *, priority: Priority | None = None,
                     job_timeout: float | None = None) -> list[BlockingJobHandle | ClientError]:
        answers = self._run(self._client.enqueue_many(worker, many_args, priority=priority, job_timeout=job_timeout))
        return [self._handle(a) if isinstance(a, JobHandle) else a for a in answers]

    def results(self, worker: WorkerRef) -> Iterator[JobResult]:
        """Results as they come; leaving the loop (or closing the iterator) ends the stream."""
        stream: AsyncIterator[JobResult] = self._client.results(worker)
        try:
            while True:
                try:
                    yield self._run(_next(stream))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None and self._loop is not None:
                self._run(aclose())

    @overload
    def call(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R: ...

    @overload
    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """`Client.call`: the function's return value."""
        return self._run(self._client.call(fn, *args, **kwargs))


async def _next(stream: AsyncIterator[T]) -> T:
    return await stream.__anext__()
