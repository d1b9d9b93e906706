"""RedisJobQueue against a real Redis: order, channels, blocking pop, cancel, remove, ack, ids."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.queue import Ticket
from jobworkerp.storage.redis_queue import RedisJobQueue
from tests.redis_queue.conftest import RedisEnv, job

pytestmark = pytest.mark.timeout(30)

HIGH, MEDIUM, LOW = data.Priority.HIGH, data.Priority.MEDIUM, data.Priority.LOW


async def inflight_ids(env: RedisEnv, q: RedisJobQueue) -> set[int]:
    return {int(i) for i in await env.call(env.client.hkeys, q.keys.inflight(q.instance_id))}


async def test_strict_priority_then_fifo(env: RedisEnv) -> None:
    q = env.queue("a")
    order = [(1, LOW), (2, MEDIUM), (3, HIGH), (4, MEDIUM), (5, LOW), (6, HIGH), (7, data.Priority(5))]
    for i, p in order:
        await q.push("c", job(i, p, args=f"args{i}".encode()))
    assert await q.length("c") == 7
    popped = [await q.pop("c") for _ in range(7)]
    assert [j.job_id for j in popped] == [3, 6, 2, 4, 7, 1, 5]  # unknown priority 5 counts as MEDIUM
    assert popped[0].job.data.args == b"args3" and popped[0].job.data.priority == HIGH
    assert await q.length("c") == 0


async def test_channels_are_separate(env: RedisEnv) -> None:
    q = env.queue("a")
    await q.push("a", job(1))
    await q.push("b", job(2))
    await q.push("weird channel:with|odd bytes é", job(3))
    assert (await q.pop("b")).job_id == 2
    assert await q.length("a") == 1 and await q.length("b") == 0
    assert (await q.pop("weird channel:with|odd bytes é")).job_id == 3
    assert (await q.pop("a")).job_id == 1


async def test_pop_blocks_in_redis_until_a_push(env: RedisEnv) -> None:
    q = env.queue("a", client=env.new_client())
    got: list[int] = []

    async def consumer() -> None:
        got.append((await q.pop("c")).job_id)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await env.wait_blocked_poppers(1)
        assert got == []
        await q.push("c", job(7))
    assert got == [7]
    assert await inflight_ids(env, q) == {7}


async def test_idle_pop_does_not_spin(env: RedisEnv) -> None:
    """While the channel stays empty a popper waits in BLPOP and looks again after each poll
    period: it does look again, and not before a whole period went by (never a busy loop)."""
    poll_s = 0.3
    q = env.queue("a", client=env.new_client(), poll_timeout_s=poll_s)
    takes: list[float] = []
    third = trio.Event()
    real_take = q._wait_and_take

    async def counting_take(channel: str) -> Ticket | None:  # a BLPOP, then a look
        takes.append(trio.current_time())
        if len(takes) == 3:
            third.set()
        return await real_take(channel)

    q._wait_and_take = counting_take  # type: ignore[method-assign]
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(q.pop, "c")
            await third.wait()
            nursery.cancel_scope.cancel()
    gaps = [b - a for a, b in zip(takes, takes[1:], strict=False)]
    assert all(gap >= poll_s * 0.9 for gap in gaps), gaps  # a BLPOP timeout between looks (0.9: clocks)


async def test_only_one_blocking_connection_per_channel_per_process(env: RedisEnv) -> None:
    """Local poppers of one channel queue on a lock, so BLPOP never eats the connection pool."""
    q = env.queue("a", client=env.new_client())
    got: list[int] = []

    async def consumer() -> None:
        job_ = await q.pop("c")
        got.append(job_.job_id)

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(consumer)
        await env.wait_blocked_poppers(1)
        await trio.testing.wait_all_tasks_blocked()
        assert await env.blocked_poppers() == 1
        for i in range(4):
            await q.push("c", job(i))
    assert sorted(got) == [0, 1, 2, 3]


async def test_two_waiting_processes_are_both_woken(env: RedisEnv) -> None:
    """No lost wake-up: two jobs pushed back to back reach both blocked poppers (one token each or
    the chained token of the first pop), long before the poll timeout (60 s; the guard is 30 s)."""
    qa = env.queue("a", client=env.new_client(), poll_timeout_s=60)
    qb = env.queue("b", client=env.new_client(), poll_timeout_s=60)
    got: list[int] = []

    async def consumer(q: RedisJobQueue) -> None:
        got.append((await q.pop("c")).job_id)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer, qa)
            nursery.start_soon(consumer, qb)
            await env.wait_blocked_poppers(2)
            await qa.push("c", job(1))
            await qa.push("c", job(2))
    assert sorted(got) == [1, 2]


async def test_cancel_of_a_blocked_pop_leaves_the_queue_intact(env: RedisEnv) -> None:
    q = env.queue("a", client=env.new_client())
    await q.push("other", job(9))
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(q.pop, "c")
            await env.wait_blocked_poppers(1)
            scope.cancel()
    assert scope.cancelled_caught
    # The cancelled BLPOP's connection is closed by the time pop returns, but Redis may read a
    # command on another connection (CLIENT LIST) before it sees that close: wait for its view.
    await env.wait_blocked_poppers(0)
    assert await q.length("other") == 1 and await inflight_ids(env, q) == set()
    # the queue (and the client) still work
    await q.push("c", job(1))
    assert (await q.pop("c")).job_id == 1


async def test_pop_cancelled_while_the_job_moves_gives_it_back(env: RedisEnv) -> None:
    """A cancel that lands while the POP script runs: the job is moved, then released, not lost."""
    q = env.queue("a", client=env.new_client())
    await q.push("c", job(1, HIGH))
    await q.push("c", job(2, LOW))
    scope = trio.CancelScope()
    releases = 0
    real_pop, real_release = q._run_pop, q.release

    async def pop_then_cancel(channel: str, most: int) -> list[Any]:
        moved = await real_pop(channel, most)
        scope.cancel()  # the caller gives up just after Redis moved the job, before pop returns it
        return moved

    async def counting_release(job_id: int) -> None:
        nonlocal releases
        releases += 1
        await real_release(job_id)

    q._run_pop, q.release = pop_then_cancel, counting_release  # type: ignore[method-assign]
    with scope:
        await q.pop("c")
    assert scope.cancelled_caught and releases == 1
    assert await inflight_ids(env, q) == set()
    q._run_pop = real_pop  # type: ignore[method-assign]
    assert [(await q.pop("c")).job_id for _ in range(2)] == [1, 2]  # back in its place


async def test_remove_a_queued_job(env: RedisEnv) -> None:
    q = env.queue("a")
    for i in (1, 2, 3):
        await q.push("c", job(i, args=b"x%d" % i))
    removed = await q.remove(2)
    assert removed is not None and removed.job_id == 2 and removed.job.data.args == b"x2"
    assert await q.remove(2) is None
    assert await q.remove(12345) is None
    assert await q.length("c") == 2
    assert [(await q.pop("c")).job_id for _ in range(2)] == [1, 3]
    assert await q.remove(1) is None  # in flight, not queued


async def test_ack_clears_in_flight(env: RedisEnv) -> None:
    q = env.queue("a")
    await q.push("c", job(1))
    await q.push("c", job(2))
    await q.pop("c")
    await q.pop("c")
    assert await inflight_ids(env, q) == {1, 2}
    await q.ack(1)
    assert await inflight_ids(env, q) == {2}
    await q.ack(1)  # twice is harmless
    await q.ack(2)
    assert not await env.call(env.client.exists, q.keys.inflight("a"))


async def test_queued_ids_cover_queued_and_in_flight_on_any_instance(env: RedisEnv) -> None:
    qa, qb = env.queue("a"), env.queue("b")
    for i in range(1, 7):
        await qa.push("c1" if i % 2 else "c2", job(i))
    await qa.push("c3", job(100))
    assert (await qa.pop("c1")).job_id == 1
    assert (await qb.pop("c2")).job_id == 2
    assert await qa.queued_ids(["c1", "c2"]) == {1, 2, 3, 4, 5, 6}
    assert await qb.queued_ids(["c2"]) == {2, 4, 6}
    assert await qb.queued_ids(["c3", "nothing"]) == {100}
    assert await qb.queued_ids([]) == set()
    await qa.ack(1)
    assert await qb.queued_ids(["c1"]) == {3, 5}


async def test_queued_ids_pages_through_long_queues(env: RedisEnv) -> None:
    q = env.queue("a")
    pipe = env.client.pipeline(transaction=False)
    for i in range(2500):  # seed through one pipeline: 2500 single pushes would be slow for no gain
        pipe.zadd(q.keys.queue("c"), {str(i): (i % 3) * 2**50 + i})
    await env.call(pipe.execute)
    ids = await q.queued_ids(["c"])
    assert ids == set(range(2500))


async def test_push_of_a_queued_id_keeps_one_copy(env: RedisEnv) -> None:
    q = env.queue("a")
    await q.push("c", job(1, args=b"old"))
    await q.push("c", job(2))
    await q.push("d", job(1, args=b"new"))  # re-pushed elsewhere: moved, not duplicated
    assert await q.length("c") == 1 and await q.length("d") == 1
    assert (await q.pop("d")).job.data.args == b"new"


async def test_repush_while_in_flight_then_ack_keeps_the_queued_copy(env: RedisEnv) -> None:
    """A retry pushes the same id before acking the attempt that failed."""
    q = env.queue("a")
    await q.push("c", job(1, args=b"try1"))
    await q.pop("c")
    await q.push("c", job(1, args=b"try2"))
    await q.ack(1)
    assert await q.queued_ids(["c"]) == {1}
    assert (await q.pop("c")).job.data.args == b"try2"


async def test_retire_hands_in_flight_jobs_back(env: RedisEnv) -> None:
    q = env.queue("a")
    for i, p in [(1, LOW), (2, HIGH), (3, MEDIUM)]:
        await q.push("c", job(i, p))
    await q.pop("c")
    await q.pop("c")
    assert await q.retire() == 2
    assert await inflight_ids(env, q) == set()
    assert await env.call(env.client.zscore, q.keys.instances, "a") is None
    assert [(await q.pop("c")).job_id for _ in range(3)] == [2, 3, 1]
    assert not await env.call(env.client.exists, q.keys.crashes)


async def test_constructor_rejects_nonsense(env: RedisEnv) -> None:
    with pytest.raises(ValueError):
        env.queue("a", lease_ms=0)
    with pytest.raises(ValueError):
        env.queue("a", max_crashes=0)


async def test_one_look_takes_several_jobs_in_order_and_says_when_it_emptied_the_queue(env: RedisEnv) -> None:
    q = env.queue("a")
    for i, prio in [(1, LOW), (2, MEDIUM), (3, HIGH), (4, MEDIUM), (5, HIGH)]:
        await q.push("c", job(i, prio))
    taken, drained = await q.try_pop_many("c", 3)
    assert [t.job_id for t in taken] == [3, 5, 2] and not drained
    taken, drained = await q.try_pop_many("c", 3)
    assert [t.job_id for t in taken] == [4, 1] and drained
    assert await q.try_pop_many("c", 3) == ([], True)
    assert await inflight_ids(env, q) == {1, 2, 3, 4, 5}  # each in flight until acked
    for i in (6, 7):
        await q.push("c", job(i))
    woken, drained = await q.pop_reporting("c", found_empty=True)  # a wake-up, then a look
    assert woken.job_id == 6 and not drained
    woken, drained = await q.pop_reporting("c", found_empty=True)
    assert woken.job_id == 7 and drained


async def test_a_pop_cancelled_as_its_wake_up_takes_a_job_gives_it_back(env: RedisEnv, monkeypatch) -> None:
    """The BLPOP and the POP after it are one round trip: a cancel that lands once the POP has
    moved the job must give the job back, not leave it in flight with nobody running it."""
    from jobworkerp.storage.redis_wire import RedisWire

    q = env.queue("a", client=env.new_client())
    await q.push("c", job(1))  # leaves a wake-up token: the BLPOP returns at once
    scope = trio.CancelScope()
    real = RedisWire.round_trip

    async def then_cancel(self: RedisWire, ops: Any) -> list[Any]:
        replies = await real(self, ops)
        scope.cancel()  # the popper gives up just as its job arrives
        return replies

    monkeypatch.setattr(RedisWire, "round_trip", then_cancel)
    with scope:
        await q.pop("c", found_empty=True)
    assert scope.cancelled_caught
    monkeypatch.setattr(RedisWire, "round_trip", real)
    assert await inflight_ids(env, q) == set()
    assert (await q.pop("c")).job_id == 1
