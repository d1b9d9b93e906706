"""Crash windows of a Scalable worker, on the real Redis and MariaDB: the stores are written as a
SIGKILL between two steps of another worker process left them, then a live worker (this
process, with the stub runner pool) takes over through the queue's own reaping.

Real time, not virtual: Redis and MariaDB answer from outside the event loop. Nothing waits for a
duration; the tests wait for the stores to reach a state, bounded only by the test timeout.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from jobworkerp.aio import call_asyncio, close_redis, open_asyncio_bridge, open_redis
from jobworkerp.app import App, serve_workers
from jobworkerp.clock import now_ms
from jobworkerp.config import load_config
from jobworkerp.lifecycle.orphans import OrphanSweep
from jobworkerp.lifecycle.placement import channel_of
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage import Storage, redis_storage
from jobworkerp.storage.queue import Ticket
from jobworkerp.storage.redis_queue import RedisJobQueue
from tests.services import REDIS_URL, require_redis
from tests.storage.mysql_support import mysql_repository, temporary_database
from tests.worker.harness import StubPool, System

pytestmark = pytest.mark.timeout(60)

STORE_ALL = {"store_success": True, "store_failure": True}
LEASE_MS = 1000


@asynccontextmanager
async def scalable_storage(tmp_path: Path) -> AsyncIterator[tuple[Storage, Any, str]]:
    """Redis (a fresh key prefix, deleted afterwards) and a temporary MariaDB database."""
    require_redis()
    prefix = f"jwtest:cw:{uuid.uuid4().hex[:12]}:"
    async with open_asyncio_bridge(), temporary_database(tmp_path) as params:
        repo = mysql_repository(params)
        await repo.open()
        client = open_redis(REDIS_URL)
        try:
            async with redis_storage(client, prefix, repo, queue_lease_ms=LEASE_MS) as storage:
                yield storage, client, prefix
        finally:
            keys = await call_asyncio(client.keys, f"{prefix}*")
            if keys:
                await call_asyncio(client.delete, *keys)
            await close_redis(client)
            await repo.aclose()


@dataclass
class Killed:
    """What a holder killed between `finish`'s row delete and its settle left: the job's status
    and its in-flight record (on an instance whose lease has ended), no row, and the result it
    stored if its worker's flags keep one."""

    system: System
    worker_id: data.WorkerId
    job_id: int
    stored: data.JobResult | None


@asynccontextmanager
async def killed_after_deleting_the_row(tmp_path: Path, **flags: bool) -> AsyncIterator[Killed]:
    async with scalable_storage(tmp_path) as (storage, client, prefix):
        config = load_config({"STORAGE_TYPE": "Scalable", "JOB_QUEUE_FETCH_INTERVAL": "500",
                              "JOB_QUEUE_WORKER_LEASE_MS": str(LEASE_MS), "WORKER_DEFAULT_CONCURRENCY": "2"})
        app = App(config, storage)
        await app.runners.seed()
        s = System(app, StubPool())
        w = await s.worker("backed", queue_type=data.QueueType.WITH_BACKUP, **flags)
        worker = await app.workers.get(w.value)
        assert worker is not None
        job_id = await s.enqueue(w, b"once")

        # The dead holder (no workers run here yet): popped the job, ran it, stored its result
        # when the flags say so, deleted its row; killed there.
        dead = RedisJobQueue(client, prefix=prefix, instance_id="dead-holder", lease_ms=LEASE_MS)
        ticket = await dead.try_pop(channel_of(worker.data))
        assert ticket is not None and ticket.job_id == job_id and ticket.backed
        await storage.status.set(job_id, data.JobStatus.RUNNING, confirm=True)
        stored = None
        if flags.get("store_success"):
            stored = app.lifecycle.result_of(ticket.job, worker, data.ResultStatus.SUCCESS, [b"once+"], now_ms())
            await storage.repo.add_results([stored])
        assert await storage.repo.delete_job(job_id)
        await call_asyncio(client.zadd, dead.keys.instances, {"dead-holder": 1})  # its lease ended long ago
        yield Killed(s, w, job_id, stored)


async def _until_its_copy_is_dealt_with(storage: Storage, job_id: int, *, status_kept: bool) -> None:
    """Reaped, popped again (redelivered) and let go: nothing holds the job any more, and its
    status is gone, or (`status_kept`) that stays (the copy ends only what it knows has ended)."""
    while (await storage.queue.held([job_id])  # noqa: ASYNC110 - Redis is the thing waited on
           or not status_kept and await storage.status.get(job_id) is not None):
        await trio.sleep(0.05)


async def test_a_backed_job_whose_holder_died_before_its_settle_gets_its_stored_result(tmp_path: Path) -> None:
    """A worker process ran a WITH_BACKUP job, stored its result and deleted its row (`finish`),
    and was SIGKILLed before the settle reached Redis. The reaper hands the job out again; the
    redelivered copy finds its row gone, as a Delete would have left it, and was let go with the
    job's status: no result ever reached its waiters (tests/scalable/test_multi_process.py, kill
    -9 of a worker). The copy must end the job with the result its holder stored, and not run
    it again."""
    async with killed_after_deleting_the_row(tmp_path, **STORE_ALL) as k:
        s, storage = k.system, k.system.app.storage
        async with storage.bus.listen_job(k.job_id) as waiter, trio.open_nursery() as nursery:
            stop = trio.Event()
            await nursery.start(serve_workers, s.app, lambda channel: s.pool, stop)
            await _until_its_copy_is_dealt_with(storage, k.job_id, status_kept=False)
            announced = await storage.bus.stored_result(k.job_id)
            got = await waiter.wait() if announced is not None else None
            stop.set()
        results = await s.app.results.list_by_job_id(k.job_id)
        listened = await s.listen(k.worker_id, k.job_id)
    assert k.stored is not None
    assert announced is not None, "the job ended without a result for its waiters"
    assert got is not None and got.id == k.stored.id and got.data.status == data.ResultStatus.SUCCESS
    assert listened.id == k.stored.id
    assert [r.id for r in results] == [k.stored.id]  # one result: the job did not run again
    assert s.pool.calls == []


async def test_a_backed_job_whose_holder_died_with_nothing_stored_is_left_to_the_orphan_sweep(
        tmp_path: Path) -> None:
    """The same death, but the worker's flags kept no result: nothing says how the attempt ended
    (or whether a Delete in another process took the row), so the copy leaves the job's status
    and drops only itself. The orphan sweep then ends the job, where the copy used to drop the
    status with itself and leave nothing to find."""
    async with killed_after_deleting_the_row(tmp_path) as k:
        s, storage = k.system, k.system.app.storage
        async with storage.bus.listen_job(k.job_id) as waiter, trio.open_nursery() as nursery:
            stop = trio.Event()
            await nursery.start(serve_workers, s.app, lambda channel: s.pool, stop)
            await _until_its_copy_is_dealt_with(storage, k.job_id, status_kept=True)
            kept = await storage.status.get(k.job_id)
            sweep = OrphanSweep(s.app.lifecycle, s.app.running, grace_ms=0)  # at once: the grace is not tested here
            swept = await sweep.sweep() if kept is not None else 0
            got = await waiter.wait() if swept else None
            stop.set()
    assert kept is not None, "the copy dropped the job's status: nothing will ever end the job"
    assert swept == 1 and got is not None
    assert got.data.status == data.ResultStatus.FATAL_ERROR and b"lost between two steps" in got.data.output.items[0]
    assert s.pool.calls == []


async def test_the_orphan_sweep_drops_a_reply_route_whose_job_never_got_a_status(tmp_path) -> None:
    """A front killed after it wrote a DIRECT job's reply route but before the job was placed
    left a route that no settle will ever drop; a live job's route is left alone."""
    async with scalable_storage(tmp_path) as (storage, client, prefix):
        config = load_config({"STORAGE_TYPE": "Scalable"})
        app = App(config, storage)
        routes = storage.bus.reply_routes_key  # type: ignore[attr-defined]
        await call_asyncio(client.hset, routes, mapping={"7": "gone-front", "8": "live-front"})
        await storage.status.set(8, data.JobStatus.PENDING, confirm=True)
        await storage.queue.push("c", Ticket(data.Job(id=data.JobId(value=8), data=data.JobData(args=b"x"))))
        sweep = OrphanSweep(app.lifecycle, app.running, grace_ms=0)  # at once: the grace is not tested here
        await sweep.sweep()
        left = await call_asyncio(client.hgetall, routes)
    assert left == {b"8": b"live-front"}
