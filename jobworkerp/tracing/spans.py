"""The spans of a job's trace, as the job path records them (loaded only when tracing is on).

    client span (its traceparent in the Enqueue request's metadata)
    └── jobworkerp.service.JobService/Enqueue        front process, server span
        │   its context is kept with the job (JobExtras: queue ticket, job row)
        ├── job.queue_wait      worker process: from enqueue (or due time) until taken
        ├── job.run             worker process: the call to the runner host
        │   └── job.host        runner host process: the runner's run (exported by the server)
        ├── job.deliver         worker process: store, settle and publish the result, or place
        │   │                   the retry / next periodic run; next_workers jobs start here
        │   └── (a next_workers job: its own queue_wait, run, host and deliver spans)
        └── (a retry or periodic run: queue_wait, run, host and deliver again, same parent)

Every span of a job carries `jobworkerp.job.id`; the worker-side ones also the worker's name
and id and the channel. Contexts pass explicitly (the parent of each span is given), not as
OpenTelemetry's current span: a job's steps run in trio tasks, and across processes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import trio
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.ext import JobExtras
from jobworkerp.tracing.carrier import TRACEPARENT, TRACESTATE, Carrier, from_extras, to_extras
from jobworkerp.tracing.host import ATTRIBUTE_MAX_CHARS, SPANS_ATTR, STATUS_MAX_CHARS, Traced, call_traced
from jobworkerp.tracing.span_data import SpanData, from_data

log = logging.getLogger(__name__)

ENQUEUE = "jobworkerp.service.JobService/Enqueue"
ENQUEUE_BATCH = "jobworkerp.ext.BulkJobService/EnqueueBatch"
QUEUE_WAIT = "job.queue_wait"
RUN = "job.run"
DELIVER = "job.deliver"

JOB_ID = "jobworkerp.job.id"
WORKER_NAME = "jobworkerp.worker.name"
WORKER_ID = "jobworkerp.worker.id"
CHANNEL = "jobworkerp.channel"
RUNNER = "jobworkerp.runner"
STATUS = "jobworkerp.job.status"
RETRIED = "jobworkerp.job.retried"
BATCH_ITEMS = "jobworkerp.batch.items"
SERVICE_NAME = "service.name"


def _headers(context: Context) -> dict[str, str]:
    headers: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(headers, context=context)
    return headers


def _carrier_of(span: Span) -> Carrier:
    headers = _headers(trace.set_span_in_context(span))
    return Carrier(headers.get(TRACEPARENT, ""), headers.get(TRACESTATE, ""))


@contextmanager
def _ending(span: Span) -> Iterator[Span]:
    """End `span` on leaving; an error marks it failed, and so does a cancellation (a job's
    timeout, Delete, or a stop), which OpenTelemetry's own `use_span` would not record."""
    try:
        yield span
    except trio.Cancelled:
        span.set_status(Status(StatusCode.ERROR, "cancelled (job timeout, Delete, or the server stopping)"))
        raise
    except Exception as e:
        span.record_exception(e)
        span.set_status(Status(StatusCode.ERROR, f"{type(e).__name__}: {e}"[:STATUS_MAX_CHARS]))
        raise
    finally:
        span.end()


class JobTracing:
    """A process's tracer, and the span processors its runner hosts' spans go to."""

    def __init__(self, provider: TracerProvider, processors: Sequence[SpanProcessor]) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("jobworkerp")
        self._processors = tuple(processors)
        self._host_scope = InstrumentationScope("jobworkerp.host")

    @classmethod
    def create(cls, service_name: str, processors: Sequence[SpanProcessor]) -> JobTracing:
        """A provider with parent-based sampling: a client that sent an unsampled context gets
        no spans recorded for its job, anywhere (the flag travels with the job). The service is
        `service_name` unless OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) names it."""
        resource = Resource.create()  # OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, as the SDK reads them
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: service_name}))
        provider = TracerProvider(
            resource=resource, sampler=ParentBased(ALWAYS_ON),
            span_limits=SpanLimits(max_attribute_length=ATTRIBUTE_MAX_CHARS), shutdown_on_exit=False)
        for processor in processors:
            provider.add_span_processor(processor)
        return cls(provider, processors)

    def export(self, spans: Sequence[SpanData]) -> None:
        """Hand spans a runner host recorded to this process's processors (their exporters)."""
        for span_data in spans:
            try:
                span = from_data(span_data, self.provider.resource, self._host_scope)
                for processor in self._processors:
                    processor.on_end(span)
            except Exception:  # a span lost is a pity; a job failed by it would be a bug
                log.exception("tracing: a runner host's span could not be exported")

    @contextmanager
    def enqueue(self, client: Carrier | None, *, items: int | None = None) -> Iterator[EnqueueTrace]:
        """The server span of an Enqueue (`items` None) or EnqueueBatch call of `items` items,
        child of the client's span when it sent a context."""
        method = ENQUEUE if items is None else ENQUEUE_BATCH
        parent = Context() if client is None else TraceContextTextMapPropagator().extract(client.as_headers())
        service, _, rpc = method.rpartition("/")
        attributes: dict[str, Any] = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc}
        if items is not None:
            attributes[BATCH_ITEMS] = items
        span = self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        with _ending(span):
            yield EnqueueTrace(span, describe=items is None)

    def job(self, extras: JobExtras | None) -> JobTrace | None:
        """The trace a taken job continues; None for a job that carries no trace context."""
        carrier = from_extras(extras)
        if carrier is None:
            return None
        return JobTrace(self, TraceContextTextMapPropagator().extract(carrier.as_headers()))


class EnqueueTrace:
    """An Enqueue's span, and the context each job it accepts keeps."""

    def __init__(self, span: Span, *, describe: bool) -> None:
        self._span = span
        self._describe = describe  # one job: the span names it (a batch's span names no job)
        self._extras: JobExtras | None = None

    def extras_for(self, job: data.Job, worker: data.Worker, channel: str) -> JobExtras:
        if self._describe:
            self._span.set_attributes({JOB_ID: job.id.value, WORKER_NAME: worker.data.name,
                                       WORKER_ID: worker.id.value, CHANNEL: channel})
        if self._extras is None:
            self._extras = to_extras(_carrier_of(self._span))
        return self._extras


class JobTrace:
    """The spans of one taken job's attempt in the worker process (module docstring)."""

    def __init__(self, tracing: JobTracing, parent: Context) -> None:
        self._tracing = tracing
        self._parent = parent
        self._attributes: dict[str, Any] = {}
        self._delivering: Span | None = None

    def waited(self, job: data.Job, worker: data.Worker, channel: str) -> None:
        """Record the job's wait, from when it could first run — enqueued, or due (a scheduled
        job, a retry, a periodic run: their wait before the due time is not queueing) — until
        now, when a worker has taken it. Recorded at its end, so with an explicit start."""
        jd = job.data
        self._attributes = {JOB_ID: job.id.value, WORKER_NAME: worker.data.name, WORKER_ID: worker.id.value,
                            CHANNEL: channel, RETRIED: jd.retried}
        end = time.time_ns()
        start = min(max(jd.enqueue_time, jd.run_after_time) * 1_000_000, end)
        span = self._tracing.tracer.start_span(QUEUE_WAIT, context=self._parent, attributes=self._attributes,
                                               start_time=start)
        span.end(end_time=end)

    async def call_host(self, run: Callable[..., Awaitable[Any]], runner: str, fn: Callable[..., Any],
                        *args: Any, **options: Any) -> Any:
        """`await run(fn, *args, **options)` on a runner host, in a `job.run` span whose child the
        host records (`tracing.host.call_traced`) and returns for export here."""
        attributes = {**self._attributes, RUNNER: runner}
        span = self._tracing.tracer.start_span(RUN, context=self._parent, attributes=attributes)
        with _ending(span):
            headers = _headers(trace.set_span_in_context(span))
            try:
                reply: Traced = await run(call_traced, headers.get(TRACEPARENT, ""), headers.get(TRACESTATE, ""),
                                          attributes, fn, *args, **options)
            except BaseException as e:
                self._tracing.export(getattr(e, SPANS_ATTR, ()))
                raise
            self._tracing.export(reply.spans)
            return reply.value

    @contextmanager
    def delivering(self, status: data.ResultStatus) -> Iterator[None]:
        """The span of the attempt's report: its result stored, settled and published (or its
        next run placed), and next_workers jobs started."""
        span = self._tracing.tracer.start_span(DELIVER, context=self._parent, attributes={
            **self._attributes, STATUS: data.ResultStatus(status).name})
        self._delivering = span
        with _ending(span):
            yield

    def chain_extras(self) -> JobExtras:
        """The context a next_workers job keeps: its trace continues under this delivery."""
        if self._delivering is not None:
            return to_extras(_carrier_of(self._delivering))
        headers = _headers(self._parent)
        return to_extras(Carrier(headers.get(TRACEPARENT, ""), headers.get(TRACESTATE, "")))
