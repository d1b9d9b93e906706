"""Storage drivers behind small protocols: relational DB, job queue, job status, result bus,
uniq_key guard and worker-change events — one bundle per storage mode.

Standalone: SQLite + in-process queues and notifications (one all-in-one process).
Scalable: MySQL/MariaDB + Redis, shared by any number of front and worker processes.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import trio

from jobworkerp.config import STANDALONE, Config
from jobworkerp.storage.job_status import JobStatusStore, MemoryJobStatusStore
from jobworkerp.storage.memory_output import MemoryOutputStreams
from jobworkerp.storage.memory_queue import MemoryJobQueue
from jobworkerp.storage.output_stream import OutputBounds, OutputStreams
from jobworkerp.storage.pubsub import MemoryResultBus, ResultBus
from jobworkerp.storage.queue import JobQueue
from jobworkerp.storage.rdb import Repository
from jobworkerp.storage.settle import JobSettler, MemoryJobSettler
from jobworkerp.storage.uniq_keys import MemoryUniqKeyGuard, UniqKeyGuard
from jobworkerp.storage.worker_stream import StreamBounds

if TYPE_CHECKING:  # imported where used: Standalone never loads the Redis side
    from jobworkerp.storage.channel_reports import ChannelReports
    from jobworkerp.storage.node_lease import NodeLease

CLOSE_S = 10.0  # longest wait for closing a driver at shutdown


class WorkerEvents(Protocol):
    """Tells every process when a worker definition changed (so caches are dropped) and when a
    job was deleted (so the process running it cancels it)."""

    async def publish_worker_changed(self, worker_id: int) -> None: ...

    def on_worker_changed(self, callback: Callable[[int], None]) -> None: ...

    async def publish_job_cancel(self, job_id: int) -> None: ...

    def on_job_cancel(self, callback: Callable[[int], object]) -> None: ...


class LocalWorkerEvents:
    """Standalone: one process, nothing to tell."""

    async def publish_worker_changed(self, worker_id: int) -> None:
        return None

    def on_worker_changed(self, callback: Callable[[int], None]) -> None:
        return None

    async def publish_job_cancel(self, job_id: int) -> None:
        return None

    def on_job_cancel(self, callback: Callable[[int], object]) -> None:
        return None


@dataclass
class Storage:
    """Everything the core reads and writes, for one storage mode."""

    repo: Repository
    queue: JobQueue
    status: JobStatusStore
    bus: ResultBus
    uniq_keys: UniqKeyGuard
    settler: JobSettler
    worker_events: WorkerEvents = field(default_factory=LocalWorkerEvents)
    scalable: bool = False
    node_id: int | None = None  # snowflake node of this process; None = derive from the host
    node_lease: NodeLease | None = None  # Scalable: keeps node_id unique among live processes
    output: OutputStreams = field(default_factory=MemoryOutputStreams)  # streamed jobs' output (output_stream.py)
    channel_reports: ChannelReports | None = None  # Scalable: worker processes' channel numbers, for fronts


def stream_bounds(config: Config) -> StreamBounds:
    """How far one ListenStreamByWorker subscriber may fall behind (storage/worker_stream.py)."""
    return StreamBounds(config.listen_stream_max_buffered, config.listen_stream_max_buffered_bytes)


def output_bounds(config: Config) -> OutputBounds:
    """How much of a streamed job's output is kept for its listeners, and how long (output_stream.py)."""
    return OutputBounds(config.job_stream_max_chunks, config.job_stream_max_bytes, config.job_stream_keep_s)


def memory_storage(repo: Repository, bounds: StreamBounds | None = None,
                   output: OutputBounds | None = None) -> Storage:
    """In-process queues and notifications around a repository (Standalone, and tests)."""
    queue, status, uniq_keys = MemoryJobQueue(), MemoryJobStatusStore(), MemoryUniqKeyGuard()
    bus = MemoryResultBus(bounds)
    return Storage(repo=repo, queue=queue, status=status, bus=bus, uniq_keys=uniq_keys,
                   settler=MemoryJobSettler(status, uniq_keys, queue, bus), output=MemoryOutputStreams(output))


def new_instance_id() -> str:
    """Identifies one worker process in Redis (its in-flight jobs, its lease)."""
    return f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def open_storage(config: Config) -> AsyncIterator[Storage]:
    """Open the drivers of the configured mode; closes them (flushing writes) on exit.

    Scalable needs the asyncio bridge to be open (Redis runs through it).
    """
    if config.storage_type == STANDALONE:
        from jobworkerp.storage.sqlite import SqliteRepository

        repo = SqliteRepository(config.sqlite_dbname)
        await repo.open()
        try:
            yield memory_storage(repo, stream_bounds(config), output_bounds(config))
        finally:
            await repo.aclose()
        return
    async with _open_scalable(config) as storage:
        yield storage


@asynccontextmanager
async def redis_storage(client: Any, prefix: str, repo: Repository, *, queue_lease_ms: int = 5000,
                        queue_max_crashes: int = 3, result_ttl_ms: int = 3_600_000,
                        bounds: StreamBounds | None = None,
                        output: OutputBounds | None = None) -> AsyncIterator[Storage]:
    """Redis queues, status, uniq keys and pub/sub around an opened repository (Scalable).

    Runs the process's shared pub/sub reader, and the reader of its listeners' job output
    streams, for as long as the context is open.
    """
    from jobworkerp.storage.node_lease import NodeLease
    from jobworkerp.storage.redis_bus import RedisResultBus
    from jobworkerp.storage.redis_channel_reports import RedisChannelReports
    from jobworkerp.storage.redis_output import RedisOutputStreams
    from jobworkerp.storage.redis_pipeline import RedisPipeliner
    from jobworkerp.storage.redis_queue import RedisJobQueue
    from jobworkerp.storage.redis_settle import RedisJobSettler
    from jobworkerp.storage.redis_state import RedisJobStatusStore, RedisUniqKeyGuard

    pipeliner = RedisPipeliner(client)
    bus = RedisResultBus(client, prefix, pipeliner, result_ttl_ms, bounds)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(pipeliner.run)
            await nursery.start(bus.run)
            output_streams = RedisOutputStreams(client, prefix, pipeliner, bus, output)
            await nursery.start(output_streams.run)
            node_lease = NodeLease(client, prefix)
            await node_lease.claim()
            await nursery.start(node_lease.run)
            instance_id = new_instance_id()
            queue = RedisJobQueue(client, prefix=prefix, instance_id=instance_id, lease_ms=queue_lease_ms,
                                  max_crashes=queue_max_crashes, pipeliner=pipeliner)
            status = RedisJobStatusStore(client, prefix, pipeliner)
            uniq_keys = RedisUniqKeyGuard(client, prefix, pipeliner)
            try:
                yield Storage(
                    repo=repo,
                    queue=queue,
                    status=status,
                    bus=bus,
                    uniq_keys=uniq_keys,
                    settler=RedisJobSettler(client, pipeliner, status, uniq_keys, queue, bus),
                    worker_events=bus,
                    scalable=True,
                    node_id=node_lease.node_id,
                    node_lease=node_lease,
                    output=output_streams,
                    channel_reports=RedisChannelReports(client, prefix, pipeliner, instance_id),
                )
            finally:  # its waiting connections are trio sockets of its own
                with trio.CancelScope(shield=True):
                    await queue.close_connections()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CLOSE_S):
            await bus.aclose()


@asynccontextmanager
async def _open_scalable(config: Config) -> AsyncIterator[Storage]:
    from jobworkerp.aio import close_redis, open_redis
    from jobworkerp.storage.mysql import MysqlRepository
    from jobworkerp.storage.mysql_pool import MysqlTls

    client = open_redis(config.redis_url, username=config.redis_username, password=config.redis_password,
                        max_connections=config.redis_pool_size + 8, tls_ca_cert=config.redis_tls_ca_cert,
                        tls_cert=config.redis_tls_cert, tls_key=config.redis_tls_key)
    repo = MysqlRepository(host=config.mysql_host, port=config.mysql_port, user=config.mysql_user,
                           password=config.mysql_password, database=config.mysql_dbname,
                           unix_socket=config.mysql_unix_socket, max_connections=config.mysql_max_connections,
                           tls=MysqlTls.from_config(config))
    try:
        await repo.open()
        async with redis_storage(client, config.redis_key_prefix, repo, queue_lease_ms=config.queue_lease_ms,
                                 queue_max_crashes=config.queue_max_crashes,
                                 result_ttl_ms=config.job_result_ttl_seconds * 1000,
                                 bounds=stream_bounds(config), output=output_bounds(config)) as storage:
            yield storage
    finally:
        # Shielded so a cancelled start-up still closes them, but bounded: a stop must not hang on
        # a database or Redis that does not answer (the OS closes the sockets when we exit).
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CLOSE_S):
            await repo.aclose()
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CLOSE_S):
            await close_redis(client)
