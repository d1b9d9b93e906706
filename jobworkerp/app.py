"""Builds the running system: storage, the use cases, channel actors with their runner-host
pools under a supervisor, and the gRPC front.

Supervision tree (all-in-one):

    run_all_in_one
    ├── storage (SQLite + memory queues / pub-sub)
    ├── front: grpclib server on GRPC_ADDR (through the asyncio bridge)
    └── workers Supervisor (one_for_one)
        ├── ChannelActor per channel, each owning a ProcessPool of runner hosts
        └── Scheduler: claims due RDB jobs every JOB_QUEUE_FETCH_INTERVAL into free channel slots

Shutdown order: stop pulling jobs -> let running jobs finish and deliver -> close the front ->
flush and close storage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from functools import partial

import trio

from actors.process_pool import ProcessPool
from actors.supervisor import ChildSpec, Supervisor
from jobworkerp.config import ChannelConfig, Config
from jobworkerp.front.bridge import open_asyncio_bridge, serve_grpc
from jobworkerp.front.services import build_services
from jobworkerp.ids import SnowflakeGenerator
from jobworkerp.runners.registry import RunnerRegistry
from jobworkerp.storage import Storage, open_storage
from jobworkerp.storage.group_commit import GroupCommitWriter
from jobworkerp.usecase.dispatch import Dispatcher
from jobworkerp.usecase.jobs import Jobs
from jobworkerp.usecase.results import Results
from jobworkerp.usecase.runners import Runners
from jobworkerp.usecase.workers import Workers
from jobworkerp.worker.channel import ChannelActor
from jobworkerp.worker.executor import ExecutorContext, RunnerPool
from jobworkerp.worker.recovery import recover_standalone
from jobworkerp.worker.running import RunningJobs
from jobworkerp.worker.scheduler import Scheduler

log = logging.getLogger(__name__)

# Modules a runner host imports at start, so the first job does not pay for them.
RUNNER_HOST_PRELOAD = ("jobworkerp.runners.host", "jobworkerp.runners.command")


class App:
    """The use cases the front calls, wired to one storage."""

    def __init__(self, config: Config, storage: Storage) -> None:
        self.config = config
        self.storage = storage
        self.registry = RunnerRegistry.from_config(config)
        self.ids = SnowflakeGenerator()
        self.running = RunningJobs()
        self.runners = Runners(storage.repo, self.registry)
        self.workers = Workers(storage.repo, self.registry, config)
        self.dispatcher = Dispatcher(storage, config)
        self.jobs = Jobs(storage, self.workers, self.ids, self.running, self.dispatcher, config)
        self.results = Results(storage, self.workers)
        self.executor_context = ExecutorContext(
            storage=storage,
            workers=self.workers,
            registry=self.registry,
            ids=self.ids,
            running=self.running,
            dispatcher=self.dispatcher,
            result_writer=GroupCommitWriter(storage.repo.add_results),
            fetch_interval_ms=config.fetch_interval_ms,
            claim_lease_ms=config.claim_lease_ms,
        )
        self.channels: list[ChannelActor] = []


async def serve_workers(
    app: App,
    pool_for: Callable[[ChannelConfig], RunnerPool],
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The worker side: a channel actor per channel plus the scheduler, under one supervisor.

    Returns after `stop` is set and the running jobs have finished.
    """
    config = app.config
    app.channels = [ChannelActor(channel, app.executor_context, pool_for(channel)) for channel in config.all_channels()]
    scheduler = Scheduler(app.storage.repo, app.workers, app.channels, config.fetch_interval_ms, config.claim_lease_ms)
    app.dispatcher.on_due_soon = scheduler.wake
    supervisor = Supervisor(
        [ChildSpec(f"channel:{c.channel.name}", c.run, restart="transient") for c in app.channels]
        + [ChildSpec("scheduler", scheduler.run, restart="transient")],
        name="workers",
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        task_status.started()
        await stop.wait()
        log.info("shutting down: no new jobs; waiting for %d running job(s)", len(app.running))
        scheduler.stop()
        for channel in app.channels:
            channel.stop()


async def run_all_in_one(
    config: Config,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until `stop` is set, then shut down gracefully. Reports the bound port."""
    async with open_asyncio_bridge(), open_storage(config) as storage, AsyncExitStack() as exit_stack:
        app = App(config, storage)
        await app.runners.seed()
        await recover_standalone(storage, app.workers)
        pools: dict[str, ProcessPool] = {}
        for channel in config.all_channels():
            pools[channel.name] = await exit_stack.enter_async_context(
                ProcessPool(channel.concurrency, name=f"runners[{channel.name}]", preload=RUNNER_HOST_PRELOAD,
                            startup_timeout=config.runner_host_startup_timeout)
            )
        front_stop = trio.Event()
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(
                serve_grpc, build_services(app), config.grpc_host, config.grpc_port,
                auth_token=config.auth_token, stopping=front_stop,
            ))
            async with trio.open_nursery() as worker_nursery:
                await worker_nursery.start(serve_workers, app, lambda channel: pools[channel.name], stop)
                log.info("jobworkerp all-in-one listening on %s:%d (storage: %s, channels: %s)",
                         config.grpc_host, port, config.storage_type,
                         ", ".join(f"{c.name}={c.concurrency}" for c in config.all_channels()))
                task_status.started(port)
            front_stop.set()
        log.info("stopped")
