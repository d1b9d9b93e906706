"""Builds the running system: storage, the job lifecycle, the use cases, channel workers with
their runner-host pools under a supervisor, and the gRPC front — for each process mode.

Supervision tree (all-in-one; `grpc-front` has no workers side, `worker` has no front):

    run_server
    ├── storage (Standalone: SQLite + memory queues; Scalable: MySQL + Redis, its pub/sub reader)
    ├── front: grpclib server on GRPC_ADDR (through the asyncio bridge); with USE_GRPC_WEB
    │   grpc-web on GRPC_WEB_ADDR (front/grpc_web.py), the same service handlers
    └── worker side (serve_workers)
        ├── workers Supervisor (one_for_one)
        │   └── ChannelWorker per channel: its running jobs, and under its own supervisor the
        │       queue fetcher and the due-job fetcher; each channel owns a ProcessPool of hosts
        └── queue upkeep (not restarted: it retries its own Redis errors): heartbeat lease,
            return dead workers' in-flight jobs, fail poisoned ones

Shutdown order: stop fetching jobs -> let running jobs finish and report (for at most
SHUTDOWN_GRACE_MS, or until a second signal: then they are cancelled and released) -> close the
front -> flush and close storage.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import AsyncExitStack
from functools import partial

import trio

from actors.process_pool import ProcessPool
from actors.supervisor import ChildSpec, Supervisor
from jobworkerp.aio import open_asyncio_bridge, wait_for_bridged_calls
from jobworkerp.config import STANDALONE, ChannelConfig, Config, ConfigError, check_grpc_exposure
from jobworkerp.dashboard.listen import dashboard_listen
from jobworkerp.dashboard.server import serve_dashboard
from jobworkerp.front.auth import FailureLimiter, TokenCheck
from jobworkerp.front.grpc_web import serve_grpc_web
from jobworkerp.front.server import serve_grpc
from jobworkerp.front.services import build_services
from jobworkerp.front.tls import server_ssl_context
from jobworkerp.ids import SnowflakeGenerator
from jobworkerp.lifecycle.orphans import OrphanSweep
from jobworkerp.lifecycle.recovery import recover_standalone
from jobworkerp.lifecycle.running import RunningJobs
from jobworkerp.lifecycle.transitions import JobLifecycle
from jobworkerp.metrics.exporter import serving_metrics
from jobworkerp.runners.environment import runner_env_allowlist
from jobworkerp.runners.policy import host_environment
from jobworkerp.runners.registry import RunnerRegistry
from jobworkerp.storage import Storage, open_storage
from jobworkerp.usecase.channel_info import ChannelInfo, LocalChannels
from jobworkerp.usecase.jobs import Jobs
from jobworkerp.usecase.restore import Restorer
from jobworkerp.usecase.results import Results
from jobworkerp.usecase.runners import Runners
from jobworkerp.usecase.streams import Streams
from jobworkerp.usecase.workers import Workers
from jobworkerp.worker.channel import ChannelWorker
from jobworkerp.worker.executor import ExecutorContext, RunnerPool

log = logging.getLogger(__name__)

MODES = ("all-in-one", "grpc-front", "worker")
FRONT_MODES = ("all-in-one", "grpc-front")

# Modules a runner host imports at start, so the first job does not pay for them.
REQUEST_DRAIN_S = 15.0  # how long a stop waits for requests to finish their storage work
RUNNER_HOST_PRELOAD = ("jobworkerp.runners.host", "jobworkerp.runners.command")


class App:
    """The use cases the front calls and the lifecycle the workers report to, wired to one storage."""

    def __init__(self, config: Config, storage: Storage, registry: RunnerRegistry | None = None) -> None:
        self.config = config
        self.storage = storage
        self.registry = registry if registry is not None else RunnerRegistry()  # built-ins only
        self.ids = SnowflakeGenerator(storage.node_id)
        if storage.node_lease is not None:
            storage.node_lease.on_change(self.ids.move_to)
        self.running = RunningJobs()
        self.runners = Runners(storage.repo, self.registry, self.ids)
        self.workers = Workers(storage.repo, self.registry, config)
        self.workers.on_changed = storage.worker_events.publish_worker_changed
        storage.worker_events.on_worker_changed(self.workers.forget)
        storage.worker_events.on_job_cancel(self.running.cancel_when_taken)
        self.lifecycle = JobLifecycle(storage, self.workers, self.ids, self.running,
                                      fetch_interval_ms=config.fetch_interval_ms, claim_lease_ms=config.claim_lease_ms)
        self.workers.on_deleted = self.lifecycle.end_jobs_of_deleted_worker
        self.jobs = Jobs(storage, self.workers, self.ids, self.lifecycle, config)
        self.results = Results(storage, self.workers)
        self.streams = Streams(storage, self.workers, self.jobs)
        self.restorer = Restorer(storage, self.workers, self.lifecycle, config)
        self.channel_info = ChannelInfo(storage.channel_reports)
        self.executor_context = ExecutorContext(lifecycle=self.lifecycle, registry=self.registry)
        self.channels: list[ChannelWorker] = []


async def _bound_drain(jobs: trio.CancelScope, app: App, hard_stop: trio.Event) -> None:
    """Cancel the running jobs when the drain has lasted SHUTDOWN_GRACE_MS or `hard_stop` is set
    (a second signal). A cancelled job is released by its executor, back to where it came from,
    so it runs again after a restart or on another worker: cut short, never lost."""
    grace_ms = app.config.shutdown_grace_ms
    with trio.move_on_after(grace_ms / 1000 if grace_ms else math.inf):
        await hard_stop.wait()
    why = "a second stop signal" if hard_stop.is_set() else f"SHUTDOWN_GRACE_MS={grace_ms}"
    log.warning("shutting down: %s; cancelling %d running job(s), they go back to their queue", why,
                len(app.running))
    jobs.cancel()


async def serve_workers(
    app: App,
    pool_for: Callable[[ChannelConfig], RunnerPool],
    stop: trio.Event,
    *,
    hard_stop: trio.Event | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The worker side: a channel worker per channel under one supervisor, plus queue upkeep.

    Returns after `stop` is set and the running jobs have finished, or have been cancelled and
    released after SHUTDOWN_GRACE_MS or once `hard_stop` is set.
    """
    config = app.config
    app.channels = [ChannelWorker(channel, app.executor_context, pool_for(channel), app.workers.ids_on_channel)
                    for channel in config.all_channels()]

    def wake_due_fetchers() -> None:
        for channel in app.channels:
            channel.wake()

    app.lifecycle.on_due_soon = wake_due_fetchers
    supervisor = Supervisor([ChildSpec(f"channel:{c.name}", c.run, restart="transient") for c in app.channels],
                            name="workers")
    upkeep = trio.CancelScope()

    async def queue_upkeep(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with upkeep:
            await app.storage.queue.run_maintenance(app.lifecycle.fail_poisoned, task_status=task_status)

    sweeping = trio.CancelScope()

    async def sweep_orphans() -> None:
        with sweeping:
            await OrphanSweep(app.lifecycle, app.running, grace_ms=orphan_grace_ms(config)).run()

    bounding = trio.CancelScope()

    async def bounding_drain(jobs: trio.CancelScope) -> None:
        with bounding:
            await _bound_drain(jobs, app, hard_stop if hard_stop is not None else trio.Event())

    reporting = trio.CancelScope()

    async def report_channels(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with reporting:
            await app.channel_info.publish(task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(queue_upkeep)
        if app.storage.scalable:
            nursery.start_soon(sweep_orphans)
        if app.channel_info.publishes:  # Scalable: the fronts read this process's channels from storage
            await nursery.start(report_channels)
        async with trio.open_nursery() as channels:
            await channels.start(supervisor.run)
            task_status.started()
            await stop.wait()
            log.info("shutting down: no new jobs; waiting for %d running job(s)", len(app.running))
            for channel in app.channels:
                channel.stop()
            nursery.start_soon(bounding_drain, channels.cancel_scope)
        bounding.cancel()
        with trio.CancelScope(shield=True):
            await app.storage.queue.retire()
        sweeping.cancel()
        reporting.cancel()  # withdraws this process's report
        upkeep.cancel()  # the lease heartbeat outlives the running jobs, then stops


def orphan_grace_ms(config: Config) -> int:
    """How long something must look orphaned before the sweep ends it: far longer than any
    step of a live process takes, and longer than a claim or a process lease, after which the
    queue's own recovery (re-queue from a dead process, re-claim of a row) has had its turn."""
    return max(10_000, 2 * config.claim_lease_ms, 10 * config.queue_lease_ms)


def check_mode(config: Config, mode: str) -> None:
    if mode not in MODES:
        raise ConfigError("mode", f"expected one of {', '.join(MODES)}, got {mode!r}")
    if config.storage_type == STANDALONE and mode != "all-in-one":
        raise ConfigError("STORAGE_TYPE", f"Standalone keeps queues in memory, so it runs only as all-in-one, "
                                          f"not {mode}; set STORAGE_TYPE=Scalable for separate processes")
    if mode in FRONT_MODES:
        check_grpc_exposure(config)
        server_ssl_context(config)  # a certificate that does not load stops start-up here
        _check_metrics_port_of_its_own(config)


def _check_metrics_port_of_its_own(config: Config) -> None:
    """METRICS_ADDR is bound first: on the gRPC (or grpc-web) address, it would leave that one a
    bare bind error instead of a message naming the setting."""
    addr = config.metrics_addr
    if addr is None or addr.endswith(":0"):
        return
    listeners = [("GRPC_ADDR", config.grpc_addr)]
    if config.use_grpc_web:
        listeners.append(("GRPC_WEB_ADDR", config.grpc_web_address))
    for var, taken in listeners:
        if addr == taken:
            raise ConfigError("METRICS_ADDR", f"must differ from {var} ({taken}): metrics have a port of their own")


async def serve_fronts(app: App, stopping: trio.Event, mode: str = "all-in-one", *,
                       on_call: Callable[[str, str], None] | None = None,
                       task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """The gRPC server on GRPC_ADDR and, with USE_GRPC_WEB, grpc-web on GRPC_WEB_ADDR: the same
    service objects, one count of failed token attempts per address for both (front/auth.py).
    grpc-web is bound first, so a client that finds the gRPC port open finds it too. Then the web
    dashboard on DASHBOARD_ADDR (dashboard/), a client of the gRPC port sharing that count. Reports
    the gRPC port. `on_call` counts the calls answered on GRPC_ADDR (metrics)."""
    config = app.config
    services = build_services(app)
    limiter = FailureLimiter()
    async with trio.open_nursery() as nursery:
        if config.use_grpc_web:
            web_port = await nursery.start(partial(
                serve_grpc_web, services, config.grpc_web_host, config.grpc_web_port,
                token_check=TokenCheck(config.auth_token, limiter) if config.auth_token else None,
                max_message_bytes=config.grpc_max_message_bytes, cors_origins=config.grpc_web_cors_origins,
                ssl_context=server_ssl_context(config, alpn=("http/1.1",)), stopping=stopping,
            ))
            log.info("grpc-web listening on %s:%d%s", config.grpc_web_host, web_port,
                     " (TLS)" if config.grpc_tls else "")
        port = await nursery.start(partial(
            serve_grpc, services, config.grpc_host, config.grpc_port,
            auth_token=config.auth_token, failure_limiter=limiter, max_message_bytes=config.grpc_max_message_bytes,
            max_concurrent_streams=config.grpc_max_concurrent_streams, max_frame_size=config.max_frame_size,
            ssl_context=server_ssl_context(config), stopping=stopping, on_call=on_call,
        ))
        if (listen := dashboard_listen(config, mode)) is not None:
            await nursery.start(serve_dashboard, config, listen, port, mode, limiter, stopping)
        task_status.started(port)


async def run_server(
    config: Config,
    stop: trio.Event,
    mode: str = "all-in-one",
    *,
    hard_stop: trio.Event | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until `stop` is set, then shut down gracefully; running jobs get SHUTDOWN_GRACE_MS,
    or less if `hard_stop` is set, before they are cancelled and released. Reports the bound
    port (0 for a worker)."""
    check_mode(config, mode)
    serves_front = mode in FRONT_MODES
    serves_jobs = mode in ("all-in-one", "worker")
    # Plugin discovery imports each candidate in a subprocess: keep that off the event loop.
    registry = await trio.to_thread.run_sync(RunnerRegistry.from_config, config)
    async with open_asyncio_bridge(), open_storage(config) as storage, AsyncExitStack() as exit_stack:
        app = App(config, storage, registry)
        app.jobs.stopping = stop
        await app.runners.seed()
        if not storage.scalable:
            await recover_standalone(app.lifecycle)
        elif serves_jobs and config.storage_restore_at_startup:
            log.info("restored %d backed-up job(s)", await app.restorer.restore(include_grabbed=False, limit=None))
        pools: dict[str, ProcessPool] = {}
        if serves_jobs:
            for channel in config.all_channels():
                pools[channel.name] = await exit_stack.enter_async_context(
                    ProcessPool(min(channel.concurrency, config.runner_hosts_max), name=f"runners[{channel.name}]",
                                preload=RUNNER_HOST_PRELOAD,
                                env_allowlist=runner_env_allowlist(config),
                                startup_timeout=config.runner_host_startup_timeout,
                                max_rss_mb=config.runner_host_max_rss_mb or None,
                                max_rss_name="RUNNER_HOST_MAX_RSS_MB", env=host_environment(config))
                )
            app.channel_info.local = LocalChannels(config.all_channels(), app.running, pools)
        on_call = None
        if config.metrics_addr is not None:  # served until storage closes, through the stop
            channels = [c.name for c in config.all_channels()]
            metrics = await exit_stack.enter_async_context(serving_metrics(
                config.metrics_addr, running=app.running, queue=storage.queue, queue_channels=channels, pools=pools,
                job_channels=channels if serves_jobs else []))
            app.lifecycle.observer = metrics.jobs
            on_call = metrics.grpc.call
        front_stop = trio.Event()
        async with trio.open_nursery() as nursery:
            port = 0
            if serves_front:
                exposure_warning = check_grpc_exposure(config)
                if exposure_warning:
                    log.warning("%s", exposure_warning)
                port = await nursery.start(partial(serve_fronts, app, front_stop, mode, on_call=on_call))
            async with trio.open_nursery() as worker_nursery:
                if serves_jobs:
                    await worker_nursery.start(partial(serve_workers, app, lambda channel: pools[channel.name],
                                                      stop, hard_stop=hard_stop))
                tls = " (TLS)" if config.grpc_tls else ""
                where = f"listening on {config.grpc_host}:{port}{tls}" if serves_front else "serving jobs"
                log.info("jobworkerp %s %s (storage: %s, channels: %s)", mode, where, config.storage_type,
                         ", ".join(f"{c.name}={c.concurrency}" for c in config.all_channels()) if serves_jobs else "-")
                task_status.started(port)
                if not serves_jobs:
                    await stop.wait()
            front_stop.set()
        # Requests the front has let go of may still be finishing their trio side (cleanups):
        # they need storage, which closes below.
        if (unfinished := await wait_for_bridged_calls(REQUEST_DRAIN_S)):
            log.warning("%d request(s) still unfinished %.0f s after the front stopped", unfinished,
                        REQUEST_DRAIN_S)
        # Last, once no request can add more: queued jobs that would die with this process
        # (Standalone's memory queue) are kept as rows, and run after a restart.
        with trio.CancelScope(shield=True):
            parked = await app.lifecycle.park(await storage.queue.drain_volatile())
        if parked:
            log.info("kept %d queued job(s) in the database; they run after a restart", parked)
        log.info("stopped")


async def run_all_in_one(config: Config, stop: trio.Event, *,
                         task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    await run_server(config, stop, "all-in-one", task_status=task_status)
