"""`Client`: the jobworkerp server from Python, with plain values instead of protobuf messages.

An asyncio client (grpclib), one HTTP/2 connection per `Client`, opened by `async with`. From
trio, use it inside `trio_asyncio.open_loop()` through `aio_as_trio` (README "Python API"); from
plain synchronous code, `BlockingClient`. Workers and runners are named by name (or id); settings
and args are dicts encoded through the runner's own published messages, as the CLI encodes its
JSON (payloads.py); results come back decoded (models.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import Any, Literal, ParamSpec, TypeVar, overload

from jobworkerp.client import calls, payloads
from jobworkerp.client.catalog import Catalog, WorkerRef, result_of
from jobworkerp.client.connection import TlsFiles, parse_address
from jobworkerp.client.errors import (
    AlreadyExists,
    ClientError,
    InvalidArgument,
    NoResult,
    from_status,
)
from jobworkerp.client.jobs import JobHandle
from jobworkerp.client.models import JobResult, RetryPolicy, Runner, Worker
from jobworkerp.client.rpc import DEFAULT, Rpc
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc

P = ParamSpec("P")
R = TypeVar("R")
Priority = Literal["high", "medium", "low"]
ResponseType = Literal["NO_RESULT", "DIRECT", "LISTEN_AFTER"]
QueueType = Literal["NORMAL", "WITH_BACKUP", "FORCED_RDB"]

DEFAULT_ADDRESS = "127.0.0.1:9000"
DEFAULT_TIMEOUT_S = 30.0  # for calls that do not wait for a job
DEFAULT_RETRIES = 3  # idempotent reads retried on UNAVAILABLE


class Client:
    """A connection to one jobworkerp server.

    `address`: `host:port`, `http://host:port`, or `https://host:port` (TLS; `tls` gives a CA to
    trust instead of the system store, and a client certificate for mutual TLS). `token`: the
    server's AUTH_TOKEN. `timeout`: seconds for each call that does not wait for a job (None: no
    limit); waits take their own `timeout`. `retries`: how often a read is tried again when the
    server is unavailable.
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, token: str | None = None, tls: TlsFiles | None = None, *,
                 timeout: float | None = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES) -> None:
        self.address = parse_address(address)
        self._token = token
        self._tls = tls
        self._timeout = timeout
        self._retries = retries
        self._stack: AsyncExitStack | None = None
        self._rpc: Rpc | None = None
        self._catalog: Catalog | None = None

    async def __aenter__(self) -> Client:
        from jobworkerp.client.connection import open_services

        stack = AsyncExitStack()
        services = await stack.enter_async_context(open_services(self.address, None, self._token, self._tls))
        self._stack = stack
        self._rpc = Rpc(services, self.address.text, self._timeout, self._retries)
        self._catalog = Catalog(self._rpc)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (calls in flight fail)."""
        stack, self._stack, self._rpc, self._catalog = self._stack, None, None, None
        if stack is not None:
            await stack.aclose()

    @property
    def _r(self) -> Rpc:
        if self._rpc is None:
            raise ClientError("the client is not open: use `async with Client(...) as client`")
        return self._rpc

    @property
    def _c(self) -> Catalog:
        if self._catalog is None:
            raise ClientError("the client is not open: use `async with Client(...) as client`")
        return self._catalog

    # ------------------------------------------------------------------------------- runners

    async def runners(self) -> list[Runner]:
        """Every runner the server offers: the built-ins, plugins and functions."""
        return await self._c.runners()

    async def runner(self, ref: str | int) -> Runner:
        """A runner by name ("COMMAND", a plugin's or function's name) or id; RunnerNotFound."""
        return await self._c.runner(ref)

    # ------------------------------------------------------------------------------- workers

    async def create_worker(
        self, name: str, runner: str | int = "COMMAND", settings: Any = None, *,
        response_type: ResponseType = "DIRECT", queue_type: QueueType = "NORMAL", channel: str | None = None,
        periodic_interval_ms: int = 0, store_success: bool | None = None, store_failure: bool | None = None,
        use_static: bool = False, next_workers: Iterable[WorkerRef] = (), retry: RetryPolicy | None = None,
    ) -> Worker:
        """Create a worker of `runner` (name or id) with `settings` (a dict in the runner's settings
        message, or bytes). DIRECT by default, so `run` answers in one round trip; LISTEN_AFTER
        workers store their results (the store flags default to True for them), which `enqueue`
        then `result()` waits on. AlreadyExists when the name is taken."""
        found = await self._c.runner(runner)
        listen_after = response_type == "LISTEN_AFTER"
        definition = data.WorkerData(
            name=name, runner_id=data.RunnerId(value=found.id),
            runner_settings=payloads.encode(found.settings_proto, settings, "settings"),
            retry_policy=_retry_policy(retry), periodic_interval=periodic_interval_ms, channel=channel or None,
            queue_type=data.QueueType[queue_type], response_type=data.ResponseType[response_type],
            store_success=listen_after if store_success is None else store_success,
            store_failure=listen_after if store_failure is None else store_failure,
            next_workers=[data.WorkerId(value=await self._worker_id(w)) for w in next_workers], use_static=use_static,
        )
        created = await self._r.call(lambda t: self._r.services.worker.create(definition, timeout=t), idempotent=False)
        return await self._c.worker(created.id.value)

    async def get_worker(self, worker: WorkerRef) -> Worker:
        """The current definition of a worker (by name or id); WorkerNotFound."""
        return await self._c.worker(worker)

    async def update_worker(
        self, worker: WorkerRef, *, name: str | None = None, settings: Any = None,
        response_type: ResponseType | None = None, queue_type: QueueType | None = None, channel: str | None = None,
        periodic_interval_ms: int | None = None, store_success: bool | None = None,
        store_failure: bool | None = None, use_static: bool | None = None,
        next_workers: Iterable[WorkerRef] | None = None, retry: RetryPolicy | None = None,
    ) -> Worker:
        """Change the options given (None: unchanged; `channel=""`: back to the default channel) and
        return the updated worker. The server replaces the whole definition, so the current one is
        read first: a concurrent update of another option by someone else can be lost."""
        current = await self._c.worker(worker)
        d = current.raw.data
        if name is not None:
            d.name = name
        if settings is not None:
            d.runner_settings = payloads.encode(current.runner.settings_proto, settings, "settings")
        if response_type is not None:
            d.response_type = data.ResponseType[response_type]
        if queue_type is not None:
            d.queue_type = data.QueueType[queue_type]
        if channel is not None:
            d.channel = channel or None
        if periodic_interval_ms is not None:
            d.periodic_interval = periodic_interval_ms
        for flag, value in (("store_success", store_success), ("store_failure", store_failure),
                            ("use_static", use_static)):
            if value is not None:
                setattr(d, flag, value)
        if next_workers is not None:
            d.next_workers = [data.WorkerId(value=await self._worker_id(w)) for w in next_workers]
        if retry is not None:
            d.retry_policy = _retry_policy(retry)
        request = data.Worker(id=data.WorkerId(value=current.id), data=d)
        await self._r.call(lambda t: self._r.services.worker.update(request, timeout=t), idempotent=False)
        return await self._c.worker(current.id)

    async def delete_worker(self, worker: WorkerRef) -> bool:
        """Delete a worker (its scheduled jobs end with FATAL_ERROR); False when it did not exist."""
        found = await self._c.find_worker(worker.id if isinstance(worker, Worker) else worker)
        if found is None:
            return False
        request = data.WorkerId(value=found.id)
        response = await self._r.call(lambda t: self._r.services.worker.delete(request, timeout=t), idempotent=False)
        return bool(response.is_success)

    async def _worker_id(self, worker: WorkerRef) -> int:
        if isinstance(worker, Worker):
            return worker.id
        return (await self._c.worker(worker)).id

    # ------------------------------------------------------------------------------- jobs

    async def enqueue(
        self, worker: WorkerRef, args: Any = None, *, run_after: datetime | timedelta | None = None,
        priority: Priority | None = None, uniq_key: str | None = None, job_timeout: float | None = None,
    ) -> JobHandle:
        """Enqueue one job of `worker` with `args` (a dict in the runner's args message, bytes, or
        a str for a runner without one) and return its handle.

        `run_after`: a time, or a delay from now; `priority`: high, medium (default) or low;
        `uniq_key`: at most one unfinished job per key (AlreadyExists); `job_timeout`: seconds the
        job may run (None: the server's default; 0: no limit). A DIRECT worker's job is run before
        this returns (its handle holds the result); a LISTEN_AFTER job is waited for with
        `await handle.result()`."""
        return await self._enqueue(await self._c.worker(worker), args, run_after, priority, uniq_key, job_timeout,
                                   wait=None)

    # `timeout` goes to the server (the DIRECT call's deadline, after which it deletes the job;
    # Listen's timeout), so it is a parameter rather than a local cancel scope.
    async def run(
        self, worker: WorkerRef, args: Any = None, *,
        timeout: float | None = None,  # noqa: ASYNC109
        priority: Priority | None = None, uniq_key: str | None = None, job_timeout: float | None = None,
    ) -> list[Any]:
        """Run one job and return its decoded output items; JobFailed (with the job's status and
        output) when it does not succeed, DeadlineExceeded when `timeout` seconds pass first
        (a DIRECT job is then deleted by the server). NO_RESULT workers cannot be waited on
        (NoResult)."""
        target = await self._c.worker(worker)
        if target.response_type == "NO_RESULT":
            raise NoResult(f"worker {target.name!r} is NO_RESULT: nothing to wait for; use enqueue, or a DIRECT or "
                           "LISTEN_AFTER worker")
        deadline = None if timeout is None else time.monotonic() + timeout
        handle = await self._enqueue(target, args, None, priority, uniq_key, job_timeout, wait=timeout)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        result = await handle.result(left)
        return result.raise_for_status().output

    async def _enqueue(self, worker: Worker, args: Any, run_after: datetime | timedelta | None,
                       priority: Priority | None, uniq_key: str | None, job_timeout: float | None,
                       wait: float | None) -> JobHandle:
        request = _job_request(worker, payloads.encode(worker.runner.args_proto, args, "args"), run_after, priority,
                               uniq_key, job_timeout)
        direct = worker.response_type == "DIRECT"
        try:
            # A DIRECT Enqueue waits for the job: no deadline but the caller's (the job's own timeout ends it).
            reply = await self._r.call(lambda t: self._r.services.job.enqueue(request, timeout=t), idempotent=False,
                                       seconds=wait if direct else DEFAULT)
        except InvalidArgument:
            self._c.forget_runner(worker.runner.id)  # its protos may have changed: read them again next time
            raise
        result = None if reply.result is None else result_of(reply.result, worker.runner)  # DIRECT: answered
        return JobHandle(reply.id.value, worker, self._r, result)

    async def enqueue_many(
        self, worker: WorkerRef, many_args: Sequence[Any], *, priority: Priority | None = None,
        job_timeout: float | None = None,
    ) -> list[JobHandle | ClientError]:
        """Enqueue a job per item of `many_args` in one call (the server's BulkJobService): for each
        item, in order, its handle or the typed error it was refused with (the others are still
        enqueued). DIRECT workers are refused (InvalidArgument): a batch cannot wait for results."""
        target = await self._c.worker(worker)
        answers: list[JobHandle | ClientError | None] = []  # None: sent, answer pending
        items = []
        for i, args in enumerate(many_args):
            try:
                encoded = payloads.encode(target.runner.args_proto, args, f"many_args[{i}]")
            except InvalidArgument as e:  # refused here, like the server would, without sending it
                answers.append(e)
                continue
            items.append(_job_request(target, encoded, None, priority, None, job_timeout))
            answers.append(None)
        from grpclib.const import Status

        from jobworkerp.proto.jobworkerp import ext

        request = ext.EnqueueBatchRequest(items=items)
        results = iter((await self._r.call(lambda t: self._r.services.bulk.enqueue_batch(request, timeout=t),
                                           idempotent=False)).results if items else [])
        out: list[JobHandle | ClientError] = []
        for answer in answers:
            if answer is not None:
                out.append(answer)
                continue
            item = next(results)
            if item.id is not None:
                out.append(JobHandle(item.id.value, target, self._r))
            else:
                error = item.error
                code = Status(error.code).name if error is not None else "UNKNOWN"
                out.append(from_status(code, error.message if error is not None else "no answer for this item"))
        return out

    async def results(self, worker: WorkerRef) -> AsyncIterator[JobResult]:
        """Every result of `worker`'s jobs from now on (ListenStreamByWorker), decoded, until the
        loop is left. Not for DIRECT workers, whose results go only to their callers (NoResult)."""
        target = await self._c.worker(worker)
        if target.response_type == "DIRECT":
            raise NoResult(f"worker {target.name!r} is DIRECT: its results go only to the caller of run/enqueue")
        request = svc.ListenStreamByWorkerRequest(worker_id=data.WorkerId(value=target.id))
        async for raw in self._r.stream(self._r.services.job_result.listen_stream_by_worker(request)):
            yield result_of(raw, target.runner)

    # ------------------------------------------------------------------------------- functions

    @overload
    async def call(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R: ...

    @overload
    async def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...

    async def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run a `@jobworkerp.function` on the server with these arguments and return its value
        (dataclasses rebuilt). Its worker is the DIRECT worker named like the runner, created on
        first use. JobFailed when the function raised (or its host crashed)."""
        schema = calls.schema_of(fn)
        arguments = calls.encode_arguments(fn, schema, args, kwargs)
        worker = await self._function_worker(schema.runner_name)
        calls.check_published(schema, worker.runner)
        return calls.decode_return(schema, await self.run(worker, arguments))

    async def _function_worker(self, runner_name: str) -> Worker:
        worker = await self._c.find_worker(runner_name)
        if worker is None:
            try:
                worker = await self.create_worker(runner_name, runner=runner_name, response_type="DIRECT")
            except AlreadyExists:  # created meanwhile by another caller
                worker = await self._c.worker(runner_name)
        if worker.runner.name != runner_name:
            raise ClientError(f"worker {runner_name!r} exists but runs runner {worker.runner.name!r}, "
                              f"not the function {runner_name!r}")
        return worker


def _retry_policy(retry: RetryPolicy | None) -> data.RetryPolicy | None:
    if retry is None:
        return None
    return data.RetryPolicy(type=data.RetryType[retry.type], interval=retry.interval_ms,
                            max_interval=retry.max_interval_ms, max_retry=retry.max_retry, basis=retry.basis)


def _epoch_ms(when: datetime | timedelta) -> int:
    """A time (naive = local, as datetime.timestamp reads it) or a delay from now, in epoch ms."""
    if isinstance(when, timedelta):
        return int((time.time() + when.total_seconds()) * 1000)
    return int(when.timestamp() * 1000)


def _job_request(worker: Worker, args: bytes, run_after: datetime | timedelta | None, priority: Priority | None,
                 uniq_key: str | None, job_timeout: float | None) -> svc.JobRequest:
    return svc.JobRequest(
        worker_id=data.WorkerId(value=worker.id), args=args, uniq_key=uniq_key,
        run_after_time=None if run_after is None else _epoch_ms(run_after),
        priority=None if priority is None else data.Priority[priority.upper()],
        timeout=None if job_timeout is None else int(job_timeout * 1000),
    )

