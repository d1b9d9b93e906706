"""ChannelInfoService (beyond upstream): per channel, the concurrency, running jobs and runner
hosts of the processes that serve it, and how many of those hosts ended, by cause.

Only a process with workers has these numbers (its `ProcessPool`s and `RunningJobs`), and a
Scalable `grpc-front` has none. So Standalone answers from its one process (`LocalChannels`),
while in Scalable every process with workers publishes its own report to storage every
REPORT_PERIOD_S (`ChannelInfo.publish`) and a front sums the fresh ones: the numbers are at most
a period old, and a worker that died drops out once its last report expires.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import trio

from jobworkerp.config import ChannelConfig
from jobworkerp.errors import is_outage
from jobworkerp.lifecycle.running import ActiveJob
from jobworkerp.proto.jobworkerp import ext
from jobworkerp.storage.channel_reports import ChannelReports
from jobworkerp.storage.rdb import DEFAULT_CHANNEL

log = logging.getLogger(__name__)

REPORT_PERIOD_S = 2.0  # how often a worker process publishes its report
REPORT_VALID_PERIODS = 3  # a report missed this many periods running is no longer counted
WITHDRAW_LIMIT_S = 2.0  # a stopping worker waits this long at most to withdraw its report


class HostPool(Protocol):
    """What is read of a channel's runner-host pool (actors.ProcessPool)."""

    @property
    def hosts_alive(self) -> tuple[int, int]: ...

    @property
    def host_ends(self) -> dict[str, int]: ...


class LocalChannels:
    """The channels this process runs jobs of, read on the spot (no storage, no checkpoint)."""

    def __init__(self, channels: Sequence[ChannelConfig], running: Iterable[ActiveJob],
                 pools: Mapping[str, HostPool]) -> None:
        self._channels = tuple(channels)
        self._running = running
        self._pools = pools

    def report(self) -> ext.ChannelInfoResponse:
        running: dict[str, int] = {}
        for active in self._running:
            if active.running_on is not None:
                running[active.running_on] = running.get(active.running_on, 0) + 1
        infos = []
        for channel in self._channels:
            pool = self._pools.get(channel.name)
            exclusive, shared = pool.hosts_alive if pool is not None else (0, 0)
            ends = pool.host_ends if pool is not None else {}
            infos.append(ext.ChannelInfo(
                name=channel.name, concurrency=channel.concurrency, running=running.get(channel.name, 0),
                exclusive_hosts=exclusive, shared_hosts=shared,
                host_restarts={cause: count for cause, count in ends.items() if count},
                worker_processes=1))
        return ext.ChannelInfoResponse(channels=infos)


def merge(reports: Iterable[ext.ChannelInfoResponse]) -> ext.ChannelInfoResponse:
    """The processes' reports summed per channel, the default channel first, then by name."""
    merged: dict[str, ext.ChannelInfo] = {}
    for report in reports:
        for info in report.channels:
            total = merged.setdefault(info.name, ext.ChannelInfo(name=info.name))
            total.concurrency += info.concurrency
            total.running += info.running
            total.exclusive_hosts += info.exclusive_hosts
            total.shared_hosts += info.shared_hosts
            total.worker_processes += info.worker_processes
            for cause, count in info.host_restarts.items():
                total.host_restarts[cause] = total.host_restarts.get(cause, 0) + count
    names = sorted(merged, key=lambda name: (name != DEFAULT_CHANNEL, name))
    return ext.ChannelInfoResponse(channels=[merged[name] for name in names])


class ChannelInfo:
    """FindAll, and (Scalable, a process with workers) the publishing of this process's report.

    `local` is set by the app once this process's pools exist (None: a process without workers).
    """

    def __init__(self, reports: ChannelReports | None) -> None:
        self._reports = reports
        self.local: LocalChannels | None = None

    async def find_all(self) -> ext.ChannelInfoResponse:
        if self._reports is None:  # Standalone: this process is the only one with workers
            return self.local.report() if self.local is not None else ext.ChannelInfoResponse()
        return merge(ext.ChannelInfoResponse.parse(raw) for raw in await self._reports.fresh())

    @property
    def publishes(self) -> bool:
        """Whether this process has a report for others to read (Scalable, with workers)."""
        return self._reports is not None and self.local is not None

    async def publish(self, period_s: float = REPORT_PERIOD_S, *,
                      task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Publish this process's report every `period_s` until cancelled, then withdraw it.
        Reports started after the first attempt, so a front asked once the process is up already
        counts it. A failed publish (Redis out) is logged and retried at the next period: the
        report is only ever a few seconds of information, and fronts stop counting a stale one."""
        assert self._reports is not None and self.local is not None
        reports, local = self._reports, self.local
        valid_ms = int(period_s * REPORT_VALID_PERIODS * 1000)
        failing, started = False, False
        try:
            while True:
                try:
                    await reports.publish(bytes(local.report()), valid_ms)
                    failing = False
                except Exception as e:
                    if not is_outage(e):
                        raise
                    if not failing:
                        log.warning("channel report not published (retrying every %.1f s): %s", period_s, e)
                    failing = True
                if not started:
                    task_status.started()
                    started = True
                await trio.sleep(period_s)
        finally:
            with trio.move_on_after(WITHDRAW_LIMIT_S) as withdrawing:
                withdrawing.shield = True
                try:
                    await reports.withdraw()
                except Exception as e:
                    log.warning("channel report not withdrawn (fronts drop it once stale): %s", e)
