"""grpclib service classes: translate requests, hop into trio once, map errors to gRPC status.

Every domain error becomes a precise status with a message naming the field; anything
unexpected is logged with its traceback and reported as a generic INTERNAL carrying a
correlation id that the log line also has (never a hang or a dropped connection, and never the
exception's text: it may name paths, hosts or data the caller should not see).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from grpclib.const import Handler, Status
from grpclib.exceptions import GRPCError

from jobworkerp.aio import call_trio, close_trio_generator, iterate_trio
from jobworkerp.errors import (
    AlreadyExists,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    is_outage,
)
from jobworkerp.proto.jobworkerp import data, ext
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.tracing.carrier import Carrier, client_context
from jobworkerp.wire import Encoded, encode, with_message_field

if TYPE_CHECKING:
    from grpclib._typing import IServable

log = logging.getLogger(__name__)
T = TypeVar("T")
_RESPONSE_RESULT = 2  # CreateJobResponse.result (proto/jobworkerp/service/job.proto)

_STATUS_OF: tuple[tuple[type[Exception], Status], ...] = (
    (InvalidArgument, Status.INVALID_ARGUMENT),
    (NotFound, Status.NOT_FOUND),
    (AlreadyExists, Status.ALREADY_EXISTS),
    (Unavailable, Status.UNAVAILABLE),
    (DeadlineExceeded, Status.DEADLINE_EXCEEDED),
    (ResourceExhausted, Status.RESOURCE_EXHAUSTED),
)


def _to_grpc_error(e: Exception) -> GRPCError:
    for exc_type, status in _STATUS_OF:
        if isinstance(e, exc_type):
            return GRPCError(status, str(e))
    if is_outage(e):  # Redis or the database cannot be reached now: the client may retry
        return GRPCError(Status.UNAVAILABLE, f"storage unavailable: {type(e).__name__}: {e}")
    error_id = uuid.uuid4().hex[:16]
    log.error("unexpected error while serving a request (error id %s)", error_id, exc_info=e)
    return GRPCError(Status.INTERNAL, f"internal error (error id {error_id}; details in the server log)")


async def _call(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    try:
        return await call_trio(fn, *args)
    except GRPCError:
        raise
    except Exception as e:
        raise _to_grpc_error(e) from None


async def _stream(agen: AsyncGenerator[T, None]) -> AsyncIterator[T]:
    try:
        async for item in iterate_trio(agen):
            yield item
    except GRPCError:
        raise
    except Exception as e:
        raise _to_grpc_error(e) from None
    finally:
        # A handler cancelled just as the generator handed over an item leaves it suspended at
        # its `yield`: close it now rather than leave it to the garbage collector, whose
        # finalizer logged "generator didn't stop after athrow()" (seen when a grpc-web client,
        # front/grpc_web.py, hung up on ListenStreamByWorker).
        close_trio_generator(agen)


def _page(req: svc.FindListRequest) -> tuple[int | None, int | None]:
    """As sent: the use cases give an absent limit its default and refuse what is out of range."""
    return req.limit, req.offset


def _limit(limit: int | None) -> int | None:
    return None if limit is None or limit < 0 else limit


def _id(message: Any, field: str = "value") -> int:
    return int(getattr(message, field))


class RunnerService(svc.RunnerServiceBase):
    def __init__(self, app: Any) -> None:
        self._app = app

    async def delete(self, message: data.RunnerId) -> svc.SuccessResponse:
        return svc.SuccessResponse(is_success=await _call(self._app.runners.delete, _id(message)))

    async def find(self, message: data.RunnerId) -> svc.OptionalRunnerResponse:
        return svc.OptionalRunnerResponse(data=await _call(self._app.runners.find, _id(message)))

    async def find_list(self, message: svc.FindListRequest) -> AsyncIterator[data.Runner]:
        for runner in await _call(self._app.runners.list, *_page(message)):
            yield runner

    async def count(self, message: svc.CountCondition) -> svc.CountResponse:
        return svc.CountResponse(total=await _call(self._app.runners.count))


class WorkerService(svc.WorkerServiceBase):
    def __init__(self, app: Any) -> None:
        self._app = app

    async def create(self, message: data.WorkerData) -> svc.CreateWorkerResponse:
        worker_id = await _call(self._app.workers.create, message)
        return svc.CreateWorkerResponse(id=data.WorkerId(value=worker_id))

    async def update(self, message: data.Worker) -> svc.SuccessResponse:
        return svc.SuccessResponse(is_success=await _call(self._app.workers.update, message))

    async def delete(self, message: data.WorkerId) -> svc.SuccessResponse:
        return svc.SuccessResponse(is_success=await _call(self._app.workers.delete, _id(message)))

    async def find(self, message: data.WorkerId) -> svc.OptionalWorkerResponse:
        return svc.OptionalWorkerResponse(data=await _call(self._app.workers.get, _id(message)))

    async def find_by_name(self, message: svc.WorkerNameRequest) -> svc.OptionalWorkerResponse:
        return svc.OptionalWorkerResponse(data=await _call(self._app.workers.find_by_name, message.name))

    async def find_list(self, message: svc.FindListRequest) -> AsyncIterator[data.Worker]:
        for worker in await _call(self._app.workers.list, *_page(message)):
            yield worker

    async def count(self, message: svc.CountCondition) -> svc.CountResponse:
        return svc.CountResponse(total=await _call(self._app.workers.count))


def _with_trace_context(mapping: dict[str, Handler], path: str, handler: Callable[[Any], Awaitable[None]]
                        ) -> dict[str, Handler]:
    """`mapping` with the method at `path` served by `handler`, which reads the request
    metadata (the generated handler hands on only the message): a client's W3C `traceparent`
    travels there (jobworkerp/tracing/)."""
    mapping[path] = mapping[path]._replace(func=handler)
    return mapping


class JobService(svc.JobServiceBase):
    def __init__(self, app: Any) -> None:
        self._app = app

    def __mapping__(self) -> dict[str, Handler]:
        return _with_trace_context(super().__mapping__(), "/jobworkerp.service.JobService/Enqueue", self._rpc_enqueue)

    async def _rpc_enqueue(self, stream: Any) -> None:
        """Enqueue, in place of the generated handler (`__mapping__`): it reads the request's
        metadata, and may answer with bytes that are already encoded."""
        request = await stream.recv_message()
        assert request is not None  # refused before (front/decoding.py)
        job_id, result = await _call(self._app.jobs.enqueue, request, client_context(stream.metadata))
        if isinstance(result, Encoded):  # a Scalable DIRECT result's bytes: passed on undecoded
            head = encode(svc.CreateJobResponse(id=data.JobId(value=job_id)))
            await stream.send_message(Encoded(with_message_field(head, _RESPONSE_RESULT, result.data)))
        else:
            await stream.send_message(svc.CreateJobResponse(id=data.JobId(value=job_id), result=result))

    async def delete(self, message: data.JobId) -> svc.SuccessResponse:
        return svc.SuccessResponse(is_success=await _call(self._app.jobs.delete, _id(message)))

    async def find(self, message: data.JobId) -> svc.OptionalJobResponse:
        return svc.OptionalJobResponse(data=await _call(self._app.jobs.find, _id(message)))

    async def find_list(self, message: svc.FindListRequest) -> AsyncIterator[data.Job]:
        for job in await _call(self._app.jobs.list, *_page(message)):
            yield job

    async def count(self, message: svc.CountCondition) -> svc.CountResponse:
        return svc.CountResponse(total=await _call(self._app.jobs.count))


class BulkJobService(ext.BulkJobServiceBase):
    """EnqueueBatch (beyond upstream; usecase/bulk.py): one trio hop for the whole batch, and each
    item's error mapped to the status the single Enqueue would have answered, naming the item."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def __mapping__(self) -> dict[str, Handler]:
        return _with_trace_context(super().__mapping__(), "/jobworkerp.ext.BulkJobService/EnqueueBatch",
                                   self._rpc_enqueue_batch)

    async def _rpc_enqueue_batch(self, stream: Any) -> None:
        request = await stream.recv_message()
        assert request is not None  # refused before (front/decoding.py)
        await stream.send_message(await self.enqueue_batch(request, client_context(stream.metadata)))

    async def enqueue_batch(self, message: ext.EnqueueBatchRequest, client_trace: Carrier | None = None
                            ) -> ext.EnqueueBatchResponse:
        outcomes = await _call(self._app.jobs.enqueue_batch, message.items, client_trace)
        results = [_item_result(index, outcome) for index, outcome in enumerate(outcomes)]
        accepted = sum(1 for r in results if r.id is not None)
        return ext.EnqueueBatchResponse(results=results, accepted=accepted, failed=len(results) - accepted)


def _item_result(index: int, outcome: int | Exception) -> ext.EnqueueItemResult:
    if not isinstance(outcome, Exception):
        return ext.EnqueueItemResult(id=data.JobId(value=outcome))
    error = _to_grpc_error(outcome)
    # "items[3].worker_name: ..." for a field error, "items[3]: ..." for the others.
    separator = "." if isinstance(outcome, InvalidArgument) else ": "
    return ext.EnqueueItemResult(error=ext.EnqueueItemError(
        code=error.status.value, message=f"items[{index}]{separator}{error.message}"))


class JobStreamService(ext.JobStreamServiceBase):
    """Streamed output (beyond upstream; usecase/streams.py): one trio hop per batch of the items
    ready at once (a burst of a command's lines), each item then sent as a message of its own."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def __mapping__(self) -> dict[str, Handler]:
        return _with_trace_context(super().__mapping__(), "/jobworkerp.ext.JobStreamService/EnqueueForStream",
                                   self._rpc_enqueue_for_stream)

    async def _rpc_enqueue_for_stream(self, stream: Any) -> None:
        request = await stream.recv_message()
        assert request is not None  # refused before (front/decoding.py)
        await self._call_rpc_handler_server_stream(
            lambda message: self.enqueue_for_stream(message, client_context(stream.metadata)), stream, request)

    async def enqueue_for_stream(self, message: svc.JobRequest, client_trace: Carrier | None = None
                                 ) -> AsyncIterator[ext.JobOutputItem]:
        async for items in _stream(self._app.streams.enqueue_for_stream(message, client_trace)):
            for item in items:
                yield item

    async def listen_stream(self, message: ext.ListenStreamRequest) -> AsyncIterator[ext.JobOutputItem]:
        async for items in _stream(self._app.streams.listen_stream(message)):
            for item in items:
                yield item


class ChannelInfoService(ext.ChannelInfoServiceBase):
    """FindAll (beyond upstream; usecase/channel_info.py): each channel's concurrency, running
    jobs and runner hosts as the worker processes have them."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def find_all(self, message: data.Empty) -> ext.ChannelInfoResponse:
        return await _call(self._app.channel_info.find_all)


class JobStatusService(svc.JobStatusServiceBase):
    def __init__(self, app: Any) -> None:
        self._app = app

    async def find(self, message: data.JobId) -> svc.OptionalJobStatusResponse:
        return svc.OptionalJobStatusResponse(status=await _call(self._app.jobs.status, _id(message)))

    async def find_all(self, message: data.Empty) -> AsyncIterator[svc.JobStatusResponse]:
        for job_id, status in await _call(self._app.jobs.all_statuses):
            yield svc.JobStatusResponse(id=data.JobId(value=job_id), status=status)


class JobRestoreService(svc.JobRestoreServiceBase):
    """Re-queue backed-up jobs whose queue entry was lost (Scalable; a no-op in Standalone)."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def restore(self, message: svc.JobRestoreRequest) -> svc.SuccessResponse:
        await _call(self._app.restorer.restore, bool(message.include_grabbed), _limit(message.limit))
        return svc.SuccessResponse(is_success=True)

    async def find_all(self, message: svc.JobRestoreRequest) -> AsyncIterator[data.Job]:
        for job in await _call(self._app.restorer.list_candidates, bool(message.include_grabbed), message.limit):
            yield job


class JobResultService(svc.JobResultServiceBase):
    def __init__(self, app: Any) -> None:
        self._app = app

    async def delete(self, message: data.JobResultId) -> svc.SuccessResponse:
        return svc.SuccessResponse(is_success=await _call(self._app.results.delete, _id(message)))

    async def find(self, message: data.JobResultId) -> svc.OptionalJobResultResponse:
        return svc.OptionalJobResultResponse(data=await _call(self._app.results.find, _id(message)))

    async def find_list(self, message: svc.FindListRequest) -> AsyncIterator[data.JobResult]:
        for result in await _call(self._app.results.list, *_page(message)):
            yield result

    async def find_list_by_job_id(self, message: svc.FindListByJobIdRequest) -> AsyncIterator[data.JobResult]:
        if message.job_id is None:
            raise GRPCError(Status.INVALID_ARGUMENT, "job_id: is required")
        for result in await _call(self._app.results.list_by_job_id, message.job_id.value):
            yield result

    async def listen(self, message: svc.ListenRequest) -> data.JobResult:
        return await _call(self._app.results.listen, message)

    async def listen_stream_by_worker(self, message: svc.ListenStreamByWorkerRequest) -> AsyncIterator[data.JobResult]:
        async for batch in _stream(self._app.results.stream_by_worker(message)):
            for result in batch:
                yield result

    async def count(self, message: svc.CountCondition) -> svc.CountResponse:
        return svc.CountResponse(total=await _call(self._app.results.count))


def build_services(app: Any) -> list[Any]:
    """The six jobworkerp services, the bulk, streaming and channel info extensions, gRPC health
    and server reflection (front/introspection.py)."""
    from jobworkerp.front.introspection import with_health_and_reflection

    services: list[IServable] = [
        RunnerService(app),
        WorkerService(app),
        JobService(app),
        JobStatusService(app),
        JobRestoreService(app),
        JobResultService(app),
        BulkJobService(app),
        JobStreamService(app),
        ChannelInfoService(app),
    ]
    return with_health_and_reflection(services)
