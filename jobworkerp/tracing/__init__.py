"""Tracing with OpenTelemetry: one trace per job, from the client's Enqueue to its result.

A process traces once `install` (or `configure`, from OTLP_ADDR / ZIPKIN_ADDR) has given it a
provider; `current()` is then that process's `JobTracing`, and None otherwise — the job path
asks it once per step (`if tracing is None`), so a server without tracing makes no span and
encodes no context. The package's modules:

- `carrier.py`: W3C trace context as a job carries it (request metadata, `JobExtras`, log
  fields); standard library only.
- `spans.py`: the spans of the job path (`JobTracing`, `EnqueueTrace`, `JobTrace`).
- `host.py`: the call wrapper that records a job's span inside its runner host, and the trace
  context a command gets; `span_data.py`: spans as plain data, from the host to the server.

OpenTelemetry itself is imported only here, on `install`, and by `spans.py` / `span_data.py`,
which only an installed provider loads: a server without tracing does not pay the SDK's import.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

    from jobworkerp.config import Config
    from jobworkerp.tracing.spans import JobTracing

log = logging.getLogger(__name__)

SERVICE_NAME = "jobworkerp"
# How long a stopping process waits for its last spans to be exported: an unreachable collector
# must not hold up an exit that has SHUTDOWN_GRACE_MS and Kubernetes' 30 s to fit in.
SHUTDOWN_FLUSH_S = 5.0

_current: JobTracing | None = None


def current() -> JobTracing | None:
    """This process's tracing, or None when it does not trace."""
    return _current


def install(processors: Sequence[SpanProcessor]) -> JobTracing:
    """Trace from now on, handing finished spans (the runner hosts' too) to `processors`.

    Production calls it through `configure`, with batching processors around the exporters the
    settings name; a test calls it with a SimpleSpanProcessor around an in-memory exporter. A
    provider installed before is shut down first."""
    global _current
    shutdown()
    from jobworkerp.tracing.spans import JobTracing

    _current = JobTracing.create(SERVICE_NAME, processors)
    return _current


def configure(config: Config) -> JobTracing | None:
    """Install the exporters OTLP_ADDR and ZIPKIN_ADDR name (each behind a BatchSpanProcessor:
    export happens on the SDK's own thread, never on the event loop, and an export that fails
    is only logged); None, and no tracing, when neither is set."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    processors: list[SpanProcessor] = []
    if config.otlp_addr is not None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        processors.append(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.otlp_addr,
                                                              insecure=config.otlp_addr.startswith("http://"))))
    if config.zipkin_addr is not None:
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        processors.append(BatchSpanProcessor(ZipkinExporter(endpoint=config.zipkin_addr)))
    if not processors:
        return None
    tracing = install(processors)
    log.info("tracing: exporting spans to %s", ", ".join(
        f"{kind} {addr}" for kind, addr in (("OTLP", config.otlp_addr), ("Zipkin", config.zipkin_addr)) if addr))
    return tracing


def shutdown(timeout_s: float = SHUTDOWN_FLUSH_S) -> None:
    """Stop tracing: export what is left, for at most `timeout_s` (on a thread of its own, so a
    collector that does not answer costs the exit no more than that)."""
    global _current
    tracing, _current = _current, None
    if tracing is None:
        return
    stopping = threading.Thread(target=tracing.provider.shutdown, name="tracing-shutdown", daemon=True)
    stopping.start()
    stopping.join(timeout_s)
    if stopping.is_alive():
        log.warning("tracing: the last spans were not exported within %.0f s; exiting without them", timeout_s)
