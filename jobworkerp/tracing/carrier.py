"""W3C trace context as the job path carries it: read from a client's request metadata, kept in
a job's `JobExtras`, read back for logs. Standard library and protos only, so the job path can
use it without loading OpenTelemetry (tracing off costs nothing but these few checks).

Why a check of our own rather than the SDK's propagator: with tracing off, a client's
`traceparent` is still passed on with its job (W3C trace context asks a service that does not
trace to forward it), so a worker process that traces continues the client's trace; storing what
a client sent unchecked would let it park anything in every job row.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from jobworkerp.proto.jobworkerp.ext import JobExtras

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# version-trace id-parent id-flags; version ff is invalid, all-zero ids are invalid (W3C).
_TRACEPARENT = re.compile(r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
# W3C allows 32 list members of at most 256 characters; beyond this a tracestate is dropped
# (the traceparent alone still joins the trace), so a job's context stays small.
TRACESTATE_MAX_CHARS = 512


class Carrier(NamedTuple):
    """A trace context: the `traceparent` header and the `tracestate` header ("" when none)."""

    traceparent: str
    tracestate: str = ""

    def as_headers(self) -> dict[str, str]:
        headers = {TRACEPARENT: self.traceparent}
        if self.tracestate:
            headers[TRACESTATE] = self.tracestate
        return headers


def valid_traceparent(value: str) -> bool:
    # Version 00 is exactly 55 characters; a later version may append fields after a dash.
    return (len(value) == 55 or len(value) > 55 and value[55] == "-" and value[:2] != "00") \
        and _TRACEPARENT.match(value) is not None


def client_context(metadata: Any) -> Carrier | None:
    """The trace context a client sent in its request metadata (grpclib's, or grpc-web's
    headers), or None: none sent, or a `traceparent` that is not one (ignored, as W3C asks)."""
    traceparent = metadata.get(TRACEPARENT)
    if not traceparent:
        return None
    traceparent = str(traceparent).strip().lower()
    if not valid_traceparent(traceparent):
        return None
    tracestate = str(metadata.get(TRACESTATE) or "").strip()
    return Carrier(traceparent, tracestate if len(tracestate) <= TRACESTATE_MAX_CHARS else "")


def from_extras(extras: JobExtras | None) -> Carrier | None:
    """The trace context kept with a job, or None (not traced)."""
    if extras is None or not extras.traceparent:
        return None
    return Carrier(extras.traceparent, extras.tracestate)


def to_extras(carrier: Carrier) -> JobExtras:
    return JobExtras(traceparent=carrier.traceparent, tracestate=carrier.tracestate)


def trace_only(extras: JobExtras | None) -> JobExtras | None:
    """A job's trace context alone, for a job it starts (a next_workers job continues its
    trace; what else the job asked for, e.g. streaming output, is its own)."""
    carrier = from_extras(extras)
    return None if carrier is None else to_extras(carrier)


def trace_id_of(extras: JobExtras | None) -> str | None:
    """The trace id (32 hex digits) of a job's context, for its log lines; None when untraced."""
    if extras is None or not extras.traceparent:
        return None
    return extras.traceparent[3:35]


class PassedOn:
    """A client's context, kept as it came with the job it enqueued, by a process that does not
    trace itself (the same `extras_for` as `spans.EnqueueTrace`)."""

    def __init__(self, carrier: Carrier) -> None:
        self._extras = to_extras(carrier)

    def extras_for(self, job: object, worker: object, channel: str) -> JobExtras:
        return self._extras
