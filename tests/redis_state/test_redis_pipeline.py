"""The shared Redis pipeliner: many callers, few round trips, each caller gets its own reply."""

from __future__ import annotations

import pytest
import trio
from redis.exceptions import ResponseError

from jobworkerp.aio import call_asyncio
from jobworkerp.storage import redis_pipeline
from jobworkerp.storage.redis_pipeline import RedisPipeliner
from jobworkerp.storage.redis_wire import RedisWire

pytestmark = pytest.mark.timeout(30)


def count_round_trips(monkeypatch) -> list[int]:
    """Record the size of every pipeline sent to Redis (one entry per round trip)."""
    trips: list[int] = []
    real_direct = redis_pipeline.run_redis_pipeline
    real_wire = RedisWire.round_trip

    async def direct(client, ops):
        trips.append(len(ops))
        return await real_direct(client, ops)

    async def wire(self, ops):  # the flusher's own connection
        trips.append(len(ops))
        return await real_wire(self, ops)

    monkeypatch.setattr(redis_pipeline, "run_redis_pipeline", direct)
    monkeypatch.setattr(RedisWire, "round_trip", wire)
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


async def test_the_flushers_connection_comes_back_after_redis_drops_it(redis) -> None:
    """The flusher keeps one connection for its round trips. When Redis closes it, the round trip
    on it fails (its callers see the outage, as with any lost connection) and the next one
    connects afresh: no caller is left without an answer, and nothing waits for a dead socket."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    client, prefix = redis
    pipeliner = RedisPipeliner(client)
    async with trio.open_nursery() as nursery:
        await nursery.start(pipeliner.run)
        name = f"{prefix}flusher"
        assert await pipeliner.call(lambda p: p.client_setname(name)) is True
        assert await pipeliner.call(lambda p: p.incr(f"{prefix}n")) == 1
        flusher = [c["id"] for c in await call_asyncio(client.client_list) if c.get("name") == name]
        assert len(flusher) == 1  # only this connection: other tests share this Redis
        assert await call_asyncio(client.client_kill_filter, _id=flusher[0]) == 1
        outcomes: list[object] = []
        for _ in range(3):
            try:
                outcomes.append(await pipeliner.call(lambda p: p.incr(f"{prefix}n")))
            except RedisConnectionError as e:
                outcomes.append(type(e))
        counted = [o for o in outcomes if isinstance(o, int)]
        assert outcomes.count(RedisConnectionError) <= 1 and len(counted) + outcomes.count(RedisConnectionError) == 3
        assert isinstance(outcomes[-1], int)  # back
        assert counted == list(range(2, 2 + len(counted)))  # each answered increment counted once
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


async def test_a_lone_call_is_sent_by_its_caller_with_what_was_queued_before_it(redis, monkeypatch) -> None:
    """With no round trip in flight, the caller makes the round trip itself rather than handing
    it to the flusher and waiting to be woken (two scheduling rounds on a quiet system's job
    path); it takes along what was queued before it, in order."""
    client, prefix = redis
    senders: list[str] = []
    real_wire = RedisWire.round_trip

    async def wire(self, ops):
        senders.append(trio.lowlevel.current_task().name)
        return await real_wire(self, ops)

    monkeypatch.setattr(RedisWire, "round_trip", wire)
    pipeliner = RedisPipeliner(client)
    key = f"{prefix}order"
    async with trio.open_nursery() as nursery:
        await nursery.start(pipeliner.run)
        await pipeliner.call(lambda p: p.ping())  # connected
        senders.clear()
        ahead = pipeliner.submit(lambda p: p.rpush(key, "status"))
        assert ahead is not None
        assert await pipeliner.call(lambda p: p.rpush(key, "push")) == 2
        assert await ahead.reply() == 1
        nursery.cancel_scope.cancel()
    assert len(senders) == 1 and "run" not in senders[0]  # the caller's task, not the flusher's


@pytest.mark.parametrize("seed", range(40))
async def test_random_interleavings_lose_reorder_or_mix_up_no_command(redis, monkeypatch, seed: int) -> None:
    """Callers that `call`, `submit` (and await later, or never) and `send` at random moments,
    some cancelled while they wait: every command reaches Redis exactly once, in the order it
    was queued; every reply read is its own command's; and one round trip at a time is on the
    connection, whether the flusher or a caller makes it."""
    import random

    client, prefix = redis
    rng = random.Random(seed)
    key = f"{prefix}log{seed}"
    queued: list[str] = []  # tokens in the order their commands were queued
    replies: dict[str, int] = {}  # token -> RPUSH's reply (the list's length after it)
    on_wire = 0
    real_wire = RedisWire.round_trip

    async def wire(self, ops):
        nonlocal on_wire
        on_wire += 1
        assert on_wire == 1, "two round trips on one connection"
        try:
            await trio.lowlevel.checkpoint()  # let the others run meanwhile
            return await real_wire(self, ops)
        finally:
            on_wire -= 1

    monkeypatch.setattr(RedisWire, "round_trip", wire)
    pipeliner = RedisPipeliner(client)

    def push(token: str):
        return lambda p: p.rpush(key, token)

    async def caller(n: int, plan: list[tuple[str, int]]) -> None:
        later = []
        for i, (kind, pause) in enumerate(plan):
            for _ in range(pause):
                await trio.lowlevel.checkpoint()
            token = f"{n}.{i}"
            queued.append(token)
            if kind == "call":
                replies[token] = await pipeliner.call(push(token))
            elif kind == "submit":
                reply = pipeliner.submit(push(token))
                assert reply is not None
                later.append((token, reply))
            else:
                assert pipeliner.send(push(token), f"push {token}")
        for token, reply in later:
            if rng.random() < 0.7:  # the others are never awaited
                replies[token] = await reply.reply()

    async def cancelled_after(checkpoints: int, n: int, plan: list[tuple[str, int]]) -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as inner:
                inner.start_soon(caller, n, plan)
                for _ in range(checkpoints):
                    await trio.lowlevel.checkpoint()
                scope.cancel()

    async with trio.open_nursery() as nursery:
        await nursery.start(pipeliner.run)
        async with trio.open_nursery() as callers:
            for n in range(rng.randint(1, 12)):
                plan = [(rng.choice(["call", "call", "submit", "send"]), rng.randint(0, 3))
                        for _ in range(rng.randint(1, 4))]
                if rng.random() < 0.25:
                    callers.start_soon(cancelled_after, rng.randint(0, 8), n, plan)
                else:
                    callers.start_soon(caller, n, plan)
        await pipeliner.call(lambda p: p.ping())  # everything queued before it has gone out
        nursery.cancel_scope.cancel()
    landed = [item.decode() for item in await call_asyncio(client.lrange, key, 0, -1)]
    assert landed == queued
    for token, reply in replies.items():
        assert reply == landed.index(token) + 1, token
