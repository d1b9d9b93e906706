"""The traced call inside a runner host: the job's span there, and the trace context its
command sees.

The server sends `call_traced` (pickled by reference, like `runners.host.run_job`) with the
trace context of its `job.run` span and the function the call is about. Here it starts a
`job.host` span as that span's child, runs the function, and returns the value with every span
finished meanwhile as plain data (`span_data`); a failing function's exception carries them
instead (attribute SPANS_ATTR), since the call's error travels as the exception. The server
exports them with its own provider: a host needs no exporter, network access or settings of
its own, and a test's in-memory exporter sees them.

While the function runs, its span is the current OpenTelemetry span of the thread (a plugin
that uses the OpenTelemetry API makes child spans, which are collected too) and
`child_environment()` gives a COMMAND child `TRACEPARENT`/`TRACESTATE`.

Nothing here is imported by a host until its first traced call: hosts of a server without
tracing never load the SDK (the import at the top is only the standard library).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from jobworkerp.tracing.span_data import SpanData

SPANS_ATTR = "jobworkerp_spans"  # the host's finished spans, on the exception of a failed call
HOST_SPAN = "job.host"
# Longest attribute value kept (an exception's message and stack trace among them): a failed
# command's message holds its stderr tail, and spans should stay small.
ATTRIBUTE_MAX_CHARS = 4096
STATUS_MAX_CHARS = 200

# Per call (one thread each in a shared host): the spans finished by this call's thread, and the
# trace context a command it starts gets.
_collected: ContextVar[list[SpanData] | None] = ContextVar("jobworkerp_host_spans", default=None)
_child_context: ContextVar[dict[str, str] | None] = ContextVar("jobworkerp_child_trace", default=None)
_tracer: Tracer | None = None
_tracer_lock = threading.Lock()


class Traced(NamedTuple):
    """A traced call's reply: the function's value and the spans the host recorded for it."""

    value: Any
    spans: list[SpanData]


def child_environment() -> dict[str, str] | None:
    """The environment for a process a job starts: this host's, plus the job's trace context
    (TRACEPARENT, TRACESTATE: the names OpenTelemetry's environment-variable carriers read);
    None outside a traced call, i.e. inherit unchanged."""
    context = _child_context.get()
    return None if context is None else {**os.environ, **context}


def _host_tracer() -> Tracer:
    """This host's tracer, made on its first traced call: parent-based sampling (the server's
    decision, carried in the context's flags), spans handed to `_Collect`, never exported."""
    global _tracer
    with _tracer_lock:
        if _tracer is None:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
            from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

            from jobworkerp.tracing.span_data import to_data

            class _Collect(SpanProcessor):
                def on_end(self, span: ReadableSpan) -> None:
                    collected = _collected.get()
                    if collected is not None:
                        collected.append(to_data(span))

            provider = TracerProvider(sampler=ParentBased(ALWAYS_ON), resource=Resource.get_empty(),
                                      span_limits=SpanLimits(max_attribute_length=ATTRIBUTE_MAX_CHARS),
                                      shutdown_on_exit=False)
            provider.add_span_processor(_Collect())
            _tracer = provider.get_tracer("jobworkerp.host")
        return _tracer


def call_traced(traceparent: str, tracestate: str, attributes: dict[str, Any], fn: Callable[..., Any],
                *args: Any) -> Traced:
    """Run `fn(*args)` in a `job.host` span, child of the server span `traceparent` names."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    carrier = {"traceparent": traceparent, "tracestate": tracestate} if tracestate else {"traceparent": traceparent}
    parent = propagator.extract(carrier)
    collected: list[SpanData] = []
    collecting = _collected.set(collected)
    span = _host_tracer().start_span(HOST_SPAN, context=parent, kind=SpanKind.INTERNAL,
                                     attributes={**attributes, "process.pid": os.getpid()})
    current = trace.set_span_in_context(span, parent)
    attached = otel_context.attach(current)
    child: dict[str, str] = {}
    propagator.inject(child, context=current)
    exporting = _child_context.set({key.upper(): value for key, value in child.items()})
    try:
        try:
            value = fn(*args)
        except BaseException as e:
            span.record_exception(e)
            span.set_status(Status(StatusCode.ERROR, f"{type(e).__name__}: {e}"[:STATUS_MAX_CHARS]))
            span.end()
            try:
                setattr(e, SPANS_ATTR, collected)
            except Exception:  # an exception that takes no attributes: its spans are lost, the error is not
                pass
            raise
        span.end()
        return Traced(value, collected)
    finally:
        _child_context.reset(exporting)
        otel_context.detach(attached)
        _collected.reset(collecting)
