"""The shared Redis pipeliner: many callers, few round trips, each caller gets its own reply."""

from __future__ import annotations

import pytest
import trio
from redis.exceptions import ResponseError

from jobworkerp.aio import call_asyncio
from jobworkerp.storage import redis_pipeline
from jobworkerp.storage.redis_pipeline import RedisPipeliner

pytestmark = pytest.mark.timeout(30)


def count_round_trips(monkeypatch) -> list[int]:
    """Record the size of every pipeline sent to Redis (one entry per round trip)."""
    trips: list[int] = []
    real = redis_pipeline.run_redis_pipeline

    async def counting(c, ops):
        trips.append(len(ops))
        return await real(c, ops)

    monkeypatch.setattr(redis_pipeline, "run_redis_pipeline", counting)
    return trips


async def test_concurrent_calls_share_round_trips_and_get_their_own_replies(redis, monkeypatch) -> None:
    client, prefix = redis
    trips = count_round_trips(monkeypatch)
    pipeliner = RedisPipeliner(client)
    replies: dict[int, int] = {}

    async def incr(i: int) -> None:
        replies[i] = await pipeliner.call(lambda p: p.incrby(f"{prefix}n{i % 3}", i))

    async with trio.open_nursery() as nursery:
        await nursery.start(pipeliner.run)
        async with trio.open_nursery() as callers:
            for i in range(60):
                callers.start_soon(incr, i)
        nursery.cancel_scope.cancel()
    assert len(replies) == 60
    assert sum(trips) == 60 and len(trips) < 20  # coalesced
    totals = [int(await call_asyncio(client.get, f"{prefix}n{k}")) for k in range(3)]
    assert totals == [sum(i for i in range(60) if i % 3 == k) for k in range(3)]


async def test_a_failing_command_fails_only_its_caller(redis) -> None:
    client, prefix = redis
    pipeliner = RedisPipeliner(client)
    await call_asyncio(client.set, f"{prefix}text", "abc")
    async with trio.open_nursery() as nursery:
        await nursery.start(pipeliner.run)
        with pytest.raises(ResponseError):
            await pipeliner.call(lambda p: p.incr(f"{prefix}text"))
        assert await pipeliner.call(lambda p: p.incr(f"{prefix}count")) == 1
        nursery.cancel_scope.cancel()


async def test_scripts_are_reloaded_after_redis_forgets_them(redis) -> None:
    client, prefix = redis
    pipeliner = RedisPipeliner(client)
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    async with trio.open_nursery() as nursery:
        await nursery.start(pipeliner.run)
        assert await pipeliner.script(script, [f"{prefix}s"], []) == 1
        await call_asyncio(client.script_flush)
        assert await pipeliner.script(script, [f"{prefix}s"], []) == 2
        nursery.cancel_scope.cancel()


async def test_a_status_written_ahead_of_a_push_shares_its_round_trip_and_lands_first(redis, monkeypatch) -> None:
    """A new job's status (set_ahead) is confirmed by the push's round trip instead of one of its
    own, and still reaches Redis before the push; a failed write is raised by its confirmation."""
    from jobworkerp.proto.jobworkerp import data
    from jobworkerp.storage.queue import Ticket
    from jobworkerp.storage.redis_queue import RedisJobQueue
    from jobworkerp.storage.redis_state import RedisJobStatusStore

    client, prefix = redis
    trips = count_round_trips(monkeypatch)
    pipeliner = RedisPipeliner(client)
    status = RedisJobStatusStore(client, prefix, pipeliner)
    queue = RedisJobQueue(client, prefix=prefix, instance_id="i1", pipeliner=pipeliner)
    job = data.Job(id=data.JobId(value=7), data=data.JobData(worker_id=data.WorkerId(value=1), args=b""))
    async with trio.open_nursery() as nursery:
        await nursery.start(pipeliner.run)
        confirm = await status.set_ahead(7, data.JobStatus.PENDING)
        assert confirm is not None
        await queue.push("c", Ticket(job))
        await confirm()
        # One round trip carried both (a second one re-runs the push
        # when Redis had lost its script: an earlier test flushed them).
        assert trips[0] == 2
        assert await status.get(7) == data.JobStatus.PENDING
        await call_asyncio(client.set, status.key, "not a hash")
        failed = await status.set_ahead(8, data.JobStatus.PENDING)
        assert failed is not None
        with pytest.raises(ResponseError):
            await failed()
        nursery.cancel_scope.cancel()


async def test_a_command_nobody_waits_for_goes_out_with_the_next_awaited_one(redis, monkeypatch) -> None:
    """A job's RUNNING status write rides on its settle's round trip instead of costing one of
    its own; a lone one still goes out by itself."""
    client, prefix = redis
    trips = count_round_trips(monkeypatch)
    pipeliner = RedisPipeliner(client)
    async with trio.open_nursery() as nursery:
        await nursery.start(pipeliner.run)
        assert pipeliner.send(lambda p: p.set(f"{prefix}status", "running"), "status")
        await trio.lowlevel.checkpoint()  # the flusher wakes up to it, and waits for company
        assert await pipeliner.call(lambda p: p.get(f"{prefix}status")) == b"running"
        assert trips == [2]
        assert pipeliner.send(lambda p: p.set(f"{prefix}alone", "1"), "lone write")
        while True:  # nobody else comes: it goes out alone (Redis is the witness, so poll it)
            if await call_asyncio(client.get, f"{prefix}alone") is not None:
                break
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert trips == [2, 1]
