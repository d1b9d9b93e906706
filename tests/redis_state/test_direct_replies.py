"""DIRECT callers hear of their job's end on their process's reply topic (storage/redis_bus.py),
with no subscription of their own, and no reply route outlives its job or its caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from jobworkerp.aio import call_asyncio
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage import Storage, redis_storage
from jobworkerp.storage.queue import Ticket
from jobworkerp.storage.sqlite import SqliteRepository

pytestmark = pytest.mark.timeout(60)


def ticket(job_id: int) -> Ticket:
    return Ticket(data.Job(id=data.JobId(value=job_id), data=data.JobData(
        worker_id=data.WorkerId(value=1), args=b"a", timeout=1000)))


def result(job_id: int) -> data.JobResult:
    return data.JobResult(id=data.JobResultId(value=job_id + 1000), data=data.JobResultData(
        job_id=data.JobId(value=job_id), worker_id=data.WorkerId(value=1), status=data.ResultStatus.SUCCESS,
        output=data.ResultOutput(items=[b"out"])))


@asynccontextmanager
async def process(client: Any, prefix: str, tmp_path: Path, name: str) -> AsyncIterator[Storage]:
    """The Redis side of one server process (its own pipeliner, bus and queue instance)."""
    repo = SqliteRepository(str(tmp_path / f"{name}.sqlite3"))
    await repo.open()
    try:
        async with redis_storage(client, prefix, repo) as storage:
            yield storage
    finally:
        await repo.aclose()


async def routes(client: Any, storage: Storage) -> dict[bytes, bytes]:
    await storage.status.all()  # through the pipeliner: what it sent before has landed
    return await call_asyncio(client.hgetall, storage.bus.reply_routes_key)  # type: ignore[attr-defined]


async def test_a_direct_caller_hears_of_a_job_another_process_ends(redis, tmp_path, monkeypatch) -> None:
    from jobworkerp.storage import redis_bus

    monkeypatch.setattr(redis_bus, "RECHECK_S", 3600.0)  # only a message can deliver the result
    client, prefix = redis
    async with process(client, prefix, tmp_path, "front") as front, \
            process(client, prefix, tmp_path, "worker") as worker:
        async with front.bus.listen_direct(5) as waiter:
            confirm = await front.status.set_ahead(5, data.JobStatus.PENDING)
            await front.queue.push("c", ticket(5))
            assert confirm is not None
            await confirm()
            assert set(await routes(client, front)) == {b"5"}
            popped = await worker.queue.pop("c")
            await worker.settler.settle(popped.job_id, result(5), to_worker=False, ack=True)
            with trio.fail_after(30):
                assert (await waiter.wait()).data.job_id.value == 5
        assert await routes(client, front) == {}  # the settle dropped it with the job's status


async def test_a_caller_that_leaves_drops_its_route(redis, tmp_path) -> None:
    client, prefix = redis
    async with process(client, prefix, tmp_path, "front") as front:
        with trio.move_on_after(0.1):
            async with front.bus.listen_direct(6) as waiter:
                await front.queue.push("c", ticket(6))
                await waiter.wait()  # never ends: nothing runs the job
        assert await routes(client, front) == {}
        # The job ends later all the same; its result goes to the job's listeners only.
        async with front.bus.listen_job(6) as listener:
            await front.status.set(6, data.JobStatus.PENDING, confirm=True)
            assert await front.settler.settle_orphan(6, result(6), to_worker=False)
            with trio.fail_after(30):
                assert (await listener.wait()).data.job_id.value == 6
