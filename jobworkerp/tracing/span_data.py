"""Finished spans as plain data, so a runner host can hand its spans to the server.

Why: a runner host is a separate process (actors/), and a test's in-memory exporter, like a
production exporter's network setup, lives only in the server. The host records its spans with
an SDK provider of its own, turns each finished one into a tuple of builtins here (an SDK span
holds locks and cannot be pickled), and the tuples travel back with the call's reply; the
server rebuilds them and hands them to its own span processors (`spans.JobTracing.export`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

# name, (trace id, span id, flags, trace state), parent span id or None, kind, start ns, end ns,
# attributes, events [(name, ns, attributes)], (status code, description)
SpanData = tuple[str, tuple[int, int, int, tuple[tuple[str, str], ...]], int | None, int, int, int,
                 dict[str, Any], list[tuple[str, int, dict[str, Any]]], tuple[int, str | None]]


def _plain(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {key: tuple(value) if isinstance(value, list | tuple) else value
            for key, value in (attributes or {}).items()}


def to_data(span: ReadableSpan) -> SpanData:
    """A finished span as builtins only (picklable by any pickle)."""
    context = span.get_span_context()
    assert context is not None and span.start_time is not None and span.end_time is not None
    parent = span.parent.span_id if span.parent is not None else None
    identity = (context.trace_id, context.span_id, int(context.trace_flags), tuple(context.trace_state.items()))
    return (span.name, identity, parent, span.kind.value, span.start_time, span.end_time, _plain(span.attributes),
            [(event.name, event.timestamp, _plain(event.attributes)) for event in span.events],
            (span.status.status_code.value, span.status.description))


def from_data(data: SpanData, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    """The span `to_data` described, as the server's own resource reports it."""
    name, (trace_id, span_id, flags, state), parent_id, kind, start, end, attributes, events, (code, why) = data
    trace_state = TraceState(list(state))
    context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(flags), trace_state=trace_state)
    parent = None if parent_id is None else SpanContext(trace_id, parent_id, is_remote=True,
                                                        trace_flags=TraceFlags(flags), trace_state=trace_state)
    return ReadableSpan(
        name, context=context, parent=parent, resource=resource, attributes=attributes,
        events=[Event(event_name, event_attributes, timestamp) for event_name, timestamp, event_attributes in events],
        kind=SpanKind(kind), status=Status(StatusCode(code), why), start_time=start, end_time=end,
        instrumentation_scope=scope,
    )
