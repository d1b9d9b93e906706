"""One process's metrics: a private registry, its recorders, and `GET /metrics` on METRICS_ADDR.

A private `CollectorRegistry`, not prometheus_client's global one: only what this module
registers is served (no process or platform collectors reading /proc at each scrape), and two
servers in one test process never share counters.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest

from jobworkerp.config import ConfigError
from jobworkerp.lifecycle.running import ActiveJob
from jobworkerp.metrics.http import MetricsHttpServer
from jobworkerp.metrics.recorder import GrpcMetrics, JobMetrics
from jobworkerp.metrics.sampled import HostCounts, SampledMetrics
from jobworkerp.storage.queue import JobQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metrics:
    """What the rest of the process feeds: the lifecycle's observer and the gRPC call counter."""

    jobs: JobMetrics
    grpc: GrpcMetrics


@asynccontextmanager
async def serving_metrics(addr: str, *, running: Iterable[ActiveJob], queue: JobQueue, queue_channels: Sequence[str],
                          pools: Mapping[str, HostCounts], job_channels: Sequence[str]) -> AsyncIterator[Metrics]:
    """Serve /metrics on `addr` (METRICS_ADDR, HOST:PORT) while the context is open. A listener
    that cannot be opened is a ConfigError naming METRICS_ADDR. The arguments are
    `SampledMetrics`'."""
    # `_created` samples (when each series began) double the page for nothing a scrape uses.
    disable_created_metrics()
    registry = CollectorRegistry(auto_describe=False)
    metrics = Metrics(JobMetrics(registry), GrpcMetrics(registry))
    sampled = SampledMetrics(running, queue, queue_channels, pools, job_channels)
    registry.register(sampled)

    async def render() -> bytes:
        await sampled.refresh()
        return generate_latest(registry)  # no checkpoint since the refresh: one consistent page

    host, _, port = addr.rpartition(":")
    try:
        listeners = await trio.open_tcp_listeners(int(port), host=host.strip("[]"))
    except OSError as e:
        raise ConfigError("METRICS_ADDR", f"cannot listen on {addr}: {e.strerror or e}") from None
    bound = listeners[0].socket.getsockname()[1]
    log.info("metrics on http://%s:%d/metrics", host, bound)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(MetricsHttpServer(render).serve, listeners)
        try:
            yield metrics
        finally:
            nursery.cancel_scope.cancel()
