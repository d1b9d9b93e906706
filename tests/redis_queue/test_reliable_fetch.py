"""Reliable fetch: a dead worker's in-flight jobs come back (in their old places), or go to on_poison."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio

from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.redis_queue import RedisJobQueue
from tests.redis_queue.conftest import RedisEnv, job

pytestmark = pytest.mark.timeout(60)

HIGH, MEDIUM, LOW = data.Priority.HIGH, data.Priority.MEDIUM, data.Priority.LOW
LEASE_MS = 500


class Poisoned:
    """An on_poison handler that records what it got."""

    def __init__(self) -> None:
        self.jobs: list[tuple[int, str]] = []
        self.changed = trio.Event()

    async def __call__(self, j: data.Job, reason: str) -> None:
        self.jobs.append((j.job_id, reason))
        self.changed.set()
        self.changed = trio.Event()


@asynccontextmanager
async def maintaining(q: RedisJobQueue, on_poison: Poisoned | None = None) -> AsyncIterator[trio.CancelScope]:
    """Run q's maintenance for the block; cancelling the yielded scope "kills" that worker."""
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await q.run_maintenance(on_poison or Poisoned(), task_status=task_status)

        await nursery.start(run)
        yield scope
        nursery.cancel_scope.cancel()


async def redis_ms(env: RedisEnv) -> int:
    """Redis server time in ms: the clock leases are kept in."""
    seconds, micros = await env.call(env.client.time)
    return int(seconds) * 1000 + int(micros) // 1000


@dataclass
class Tick:
    """One maintenance tick (heartbeat + reap) of a queue, as seen from outside."""

    before_ms: int  # Redis time just before the tick's script was sent
    after_ms: int  # Redis time just after its reply
    length: int  # the channel's length right after it


def record_ticks(env: RedisEnv, q: RedisJobQueue, channel: str) -> list[Tick]:
    """Record every maintenance tick of ``q`` from now on (install before its maintenance starts)."""
    ticks: list[Tick] = []
    real = q._maintain_once

    async def recorded(*args: Any, **kwargs: Any) -> None:
        before = await redis_ms(env)
        await real(*args, **kwargs)
        ticks.append(Tick(before, await redis_ms(env), await q.length(channel)))

    q._maintain_once = recorded  # type: ignore[method-assign]
    return ticks


async def wait_for_tick(ticks: list[Tick], condition: Callable[[list[Tick]], bool]) -> None:
    with trio.fail_after(30):
        while not condition(ticks):  # noqa: ASYNC110 - ticks are recorded by another task
            await trio.sleep(0.01)


async def crash_count(env: RedisEnv, q: RedisJobQueue, job_id: int) -> int | None:
    raw = await env.call(env.client.hget, q.keys.crashes, str(job_id))
    return None if raw is None else int(raw)


async def test_dead_workers_jobs_come_back_in_priority_order(env: RedisEnv) -> None:
    a = env.queue("A", client=env.new_client(), lease_ms=LEASE_MS)
    b = env.queue("B", client=env.new_client(), lease_ms=LEASE_MS)
    pushed = [(1, LOW), (2, HIGH), (3, MEDIUM), (4, HIGH), (5, MEDIUM), (6, LOW), (7, MEDIUM), (8, HIGH)]
    for i, p in pushed:
        await a.push("c", job(i, p))
    expected_order = [2, 4, 8, 3, 5, 7, 1, 6]
    b_ticks = record_ticks(env, b, "c")
    async with maintaining(b):
        async with maintaining(a):
            first_pops = [await a.pop("c") for _ in range(5)]
            popped_by_a = [t.job_id for t in first_pops]
            assert popped_by_a == expected_order[:5]
            assert not any(t.redelivered for t in first_pops)
            assert await b.queued_ids(["c"]) == set(range(1, 9))  # in flight counts
            popped_at = await redis_ms(env)
            lease_at_death = int(await env.call(env.client.zscore, a.keys.instances, "A"))  # only grows
        # A is dead (its maintenance ended): no more heartbeats, nothing acked.
        lease_latest = await redis_ms(env) + LEASE_MS  # no later heartbeat of A can have landed
        await wait_for_tick(b_ticks, lambda ticks: any(t.before_ms > popped_at and t.length == 8 for t in ticks))
        # B re-queued A's jobs not before A's lease ran out, and at its first tick after that.
        later = [t for t in b_ticks if t.before_ms > popped_at]
        reaping = next(i for i, t in enumerate(later) if t.length == 8)
        assert later[reaping].after_ms >= lease_at_death, (later[reaping], lease_at_death)
        assert all(t.before_ms <= lease_latest for t in later[:reaping]), (later[:reaping + 1], lease_latest)
        second_pops = [await b.pop("c") for _ in range(8)]
        assert [t.job_id for t in second_pops] == expected_order  # old places kept
        # Only what came back from the dead instance is handed out as redelivered.
        assert {t.job_id for t in second_pops if t.redelivered} == set(popped_by_a)
        for i in popped_by_a:
            assert await crash_count(env, b, i) == 1  # counted once, although B reaped alone
            await b.ack(i)
            assert await crash_count(env, b, i) is None  # ack forgets the count
    assert not await env.call(env.client.exists, a.keys.inflight("A"))
    assert await env.call(env.client.zscore, a.keys.instances, "A") is None


async def test_two_reapers_requeue_each_job_once(env: RedisEnv) -> None:
    dead = env.queue("dead", lease_ms=LEASE_MS)
    for i in range(5):
        await dead.push("c", job(i))
    for _ in range(5):
        await dead.pop("c")  # pop registers the instance's lease; no maintenance: it is "dead" already
    b = env.queue("B", client=env.new_client(), lease_ms=LEASE_MS)
    c = env.queue("C", client=env.new_client(), lease_ms=LEASE_MS)
    async with maintaining(b), maintaining(c):
        await env.wait_length(b, "c", 5)
        await trio.sleep(LEASE_MS / 1000)  # several more ticks of both reapers
        assert await b.length("c") == 5
        assert [await crash_count(env, b, i) for i in range(5)] == [1] * 5
        assert [(await b.pop("c")).job_id for _ in range(5)] == [0, 1, 2, 3, 4]


async def test_job_in_flight_on_max_crashes_dead_workers_is_poisoned(env: RedisEnv) -> None:
    poisoned = Poisoned()
    b = env.queue("B", client=env.new_client(), lease_ms=LEASE_MS, max_crashes=3)
    await b.push("c", job(42, HIGH, args=b"boom"))
    await b.push("c", job(43, LOW))
    async with maintaining(b, poisoned):
        for n in range(1, 4):
            victim = env.queue(f"dead{n}", lease_ms=LEASE_MS, max_crashes=3)
            assert (await victim.pop("c")).job_id == 42  # still first: it keeps its HIGH place
            with trio.fail_after(30):
                if n < 3:
                    await env.wait_length(b, "c", 2)
                    assert await crash_count(env, b, 42) == n
                else:
                    await poisoned.changed.wait()
    assert len(poisoned.jobs) == 1
    job_id, reason = poisoned.jobs[0]
    assert job_id == 42 and "3 worker processes" in reason
    assert await b.queued_ids(["c"]) == {43}  # gone for good; the other job untouched
    assert await crash_count(env, b, 42) is None
    assert not await env.call(env.client.keys, f"{env.prefix}inflight:*")


async def test_failing_poison_handler_does_not_stop_maintenance(env: RedisEnv) -> None:
    calls: list[trio.Event] = [trio.Event(), trio.Event()]

    async def broken(j: data.Job, reason: str) -> None:
        calls.pop(0).set()
        raise RuntimeError("handler bug")

    b = env.queue("B", lease_ms=LEASE_MS, max_crashes=1)
    await b.push("c", job(1))
    await b.push("c", job(2))
    victim = env.queue("dead", lease_ms=LEASE_MS, max_crashes=1)
    first, second = calls
    await victim.pop("c")
    async with trio.open_nursery() as nursery:
        await nursery.start(b.run_maintenance, broken)
        with trio.fail_after(30):
            await first.wait()
        await victim.pop("c")  # a second death, reaped by the same (still running) maintenance
        with trio.fail_after(30):
            await second.wait()
        nursery.cancel_scope.cancel()


async def test_a_live_worker_keeps_its_jobs(env: RedisEnv) -> None:
    """Heartbeats every lease/3 keep a slow job in flight past the lease its pop gave it: the
    other instance's reaper runs twice after that lease would have run out and leaves it."""
    lease_ms = 1200  # heartbeats every 400 ms: a live process may stall 800 ms without losing its jobs
    a = env.queue("A", client=env.new_client(), lease_ms=lease_ms)
    b = env.queue("B", client=env.new_client(), lease_ms=lease_ms)
    await a.push("c", job(1))
    b_ticks = record_ticks(env, b, "c")
    async with maintaining(a), maintaining(b):
        await a.pop("c")
        first_lease = int(await env.call(env.client.zscore, a.keys.instances, "A"))  # >= what the pop set
        await wait_for_tick(b_ticks, lambda ticks: sum(t.before_ms > first_lease for t in ticks) >= 2)
        assert [t.length for t in b_ticks if t.before_ms > first_lease] == [0, 0]
        assert await b.length("c") == 0
        assert await b.queued_ids(["c"]) == {1}
        await a.ack(1)
    assert await b.queued_ids(["c"]) == set()


async def test_a_job_whose_pop_answer_was_lost_goes_back_to_its_queue(env: RedisEnv) -> None:
    """A pop moves the job into this instance's in-flight record inside Redis; when its answer
    is lost (the connection closed as Redis shut down, or the reply came too late), nobody here
    runs the job, and the instance stays alive, so no reaper takes it back. Seen as one lost
    WITH_BACKUP job after a Redis restart under load (tests/chaos/test_redis_outage.py in CI).
    The instance's own maintenance queues such a record again after a grace period, and leaves
    alone what its pops did return."""
    a = env.queue("A", client=env.new_client(), lease_ms=300, orphan_grace_s=0.5)
    # The same instance's pop, whose answer `a` never sees (as if lost on the way).
    lost_answer = env.queue("A", client=env.new_client(), lease_ms=300)
    await a.push("c", job(1))
    await a.push("c", job(2))
    assert (await a.pop("c")).job_id == 1  # handed out here: must stay in flight
    assert (await lost_answer.pop("c")).job_id == 2
    async with maintaining(a):
        with trio.fail_after(30):
            while await a.find(2) is None:  # noqa: ASYNC110 - the maintenance task re-queues it
                await trio.sleep(0.05)
        assert await a.held([1]) == {1} and await a.find(1) is None
        assert (await a.pop("c")).job_id == 2  # and it is handed out like any queued job
