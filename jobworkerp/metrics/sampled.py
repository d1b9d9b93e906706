"""The metrics read when /metrics is scraped rather than counted as things happen: jobs running
now, jobs waiting in each queue, and runner hosts that ended (and were replaced).

Read at scrape time, they cost the job path nothing: the running jobs are those this process
has taken and started (`RunningJobs`), the queue depth is the queue's own count (for Redis a
round trip, made in trio before rendering and bounded by QUEUE_READ_LIMIT_S), and host endings
are counted by each channel's `ProcessPool` anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from actors.process_pool import HOST_END_CAUSES
from jobworkerp.lifecycle.running import ActiveJob
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.queue import JobQueue

log = logging.getLogger(__name__)

# A scrape waits this long at most for the queue depth (Redis); without it, the rest is served.
QUEUE_READ_LIMIT_S = 2.0
_PRIORITY_NAMES = {int(p): p.name for p in data.Priority}


class HostCounts(Protocol):
    """What is read of a channel's runner-host pool (actors.ProcessPool)."""

    @property
    def host_ends(self) -> dict[str, int]: ...


class SampledMetrics(Collector):
    """A prometheus collector over this process's running jobs, queues and runner-host pools.

    `refresh` (trio) reads what needs a storage round trip; `collect` (called by the renderer,
    synchronously, right after) reports it with what can be read on the spot."""

    def __init__(self, running: Iterable[ActiveJob], queue: JobQueue, queue_channels: Sequence[str],
                 pools: Mapping[str, HostCounts], job_channels: Sequence[str]) -> None:
        """`queue_channels`: the channels whose queue depth is reported; `job_channels`: the
        channels this process runs jobs of (none for a Scalable front), each reported even with
        nothing running; `pools`: each of those channels' runner-host pool."""
        self._running = running
        self._queue = queue
        self._queue_channels = tuple(queue_channels)
        self._pools = pools
        self._job_channels = tuple(job_channels)
        self._depths: dict[tuple[str, int], int] | None = None

    async def refresh(self) -> None:
        """Read the queue depth; when the queue does not answer in time (or fails), the depth is
        left out of this scrape rather than reported stale."""
        self._depths = None
        with trio.move_on_after(QUEUE_READ_LIMIT_S):
            try:
                self._depths = await self._queue.lengths_by_priority(self._queue_channels)
            except Exception as e:
                log.warning("metrics: queue depth not read (%s: %s); left out of this scrape", type(e).__name__, e)
            return
        log.warning("metrics: queue depth not read within %.0f s; left out of this scrape", QUEUE_READ_LIMIT_S)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        running = GaugeMetricFamily("jobworkerp_running_jobs", "Jobs running in this process", labels=("channel",))
        counts = dict.fromkeys(self._job_channels, 0)
        for active in self._running:
            if active.running_on is not None:
                counts[active.running_on] = counts.get(active.running_on, 0) + 1
        for channel, count in counts.items():
            running.add_metric((channel,), count)
        yield running
        if self._depths is not None:
            depth = GaugeMetricFamily("jobworkerp_queue_depth", "Jobs waiting in a channel's queue (not scheduled "
                                      "rows), by priority", labels=("channel", "priority"))
            for (channel, priority), count in self._depths.items():
                depth.add_metric((channel, _PRIORITY_NAMES.get(priority, str(priority))), count)
            yield depth
        restarts = CounterMetricFamily("jobworkerp_runner_host_restarts", "Runner hosts that ended and were "
                                       "replaced, by cause", labels=("channel", "cause"))
        for channel, pool in self._pools.items():
            ends = pool.host_ends
            for cause in HOST_END_CAUSES:
                restarts.add_metric((channel, cause), ends.get(cause, 0))
        yield restarts
