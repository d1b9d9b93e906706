"""Redis-backed job status, uniq_key guard and result bus, against the real Redis."""

from __future__ import annotations

import pytest
import trio

from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.redis_bus import RedisResultBus
from jobworkerp.storage.redis_state import RedisJobStatusStore, RedisUniqKeyGuard

pytestmark = pytest.mark.timeout(30)


def result(job_id: int, worker_id: int) -> data.JobResult:
    return data.JobResult(id=data.JobResultId(value=job_id + 1000), data=data.JobResultData(
        job_id=data.JobId(value=job_id), worker_id=data.WorkerId(value=worker_id), status=data.ResultStatus.SUCCESS,
        output=data.ResultOutput(items=[b"out"])))


async def test_job_status_round_trip(redis) -> None:
    client, prefix = redis
    store = RedisJobStatusStore(client, prefix)
    await store.set(5, data.JobStatus.PENDING)
    await store.set(3, data.JobStatus.RUNNING)
    assert await store.get(5) == data.JobStatus.PENDING
    assert await store.all() == [(3, data.JobStatus.RUNNING), (5, data.JobStatus.PENDING)]
    await store.delete(5)
    assert await store.get(5) is None


async def test_uniq_key_is_held_by_one_job_until_released(redis) -> None:
    client, prefix = redis
    guard = RedisUniqKeyGuard(client, prefix)
    other = RedisUniqKeyGuard(client, prefix)  # another process
    assert await guard.acquire("k", 1) is None
    assert await guard.acquire("k", 1) is None  # re-acquire by the holder (retries) is fine
    assert await other.acquire("k", 2) == 1
    await other.release(2)  # not the holder: no effect
    assert await other.acquire("k", 2) == 1
    await guard.release(1)
    assert await other.acquire("k", 2) is None


async def test_results_reach_listeners_in_another_process(redis) -> None:
    client, prefix = redis
    front, worker = RedisResultBus(client, prefix), RedisResultBus(client, prefix)
    async with trio.open_nursery() as nursery:
        await nursery.start(front.run)
        await nursery.start(worker.run)
        async with front.listen_job(7) as waiter_a, front.listen_job(7) as waiter_b, \
                front.listen_worker(9) as stream:
            await worker.publish(result(8, 9), to_job=True, to_worker=True)  # another job, same worker
            await worker.publish(result(7, 9), to_job=True, to_worker=True)
            with trio.fail_after(30):
                got_a, got_b = await waiter_a.wait(), await waiter_b.wait()
                streamed = [await stream.receive(), await stream.receive()]
        assert got_a.data.job_id.value == got_b.data.job_id.value == 7
        assert [r.data.job_id.value for r in streamed] == [8, 7]
        nursery.cancel_scope.cancel()
    await front.aclose()
    await worker.aclose()


async def test_worker_change_events_reach_every_process(redis) -> None:
    client, prefix = redis
    a, b = RedisResultBus(client, prefix), RedisResultBus(client, prefix)
    seen: list[int] = []
    changed = trio.Event()

    def on_change(worker_id: int) -> None:
        seen.append(worker_id)
        changed.set()

    b.on_worker_changed(on_change)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        await a.publish_worker_changed(42)
        with trio.fail_after(30):
            await changed.wait()
        nursery.cancel_scope.cancel()
    assert seen == [42]
    await a.aclose()
    await b.aclose()


async def test_a_waiter_that_missed_the_message_finds_the_stored_result(redis, monkeypatch) -> None:
    from jobworkerp.storage import redis_bus

    monkeypatch.setattr(redis_bus, "RECHECK_S", 0.2)
    client, prefix = redis
    bus = RedisResultBus(client, prefix)
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        await bus.publish(result(31, 9), to_job=True, to_worker=False)  # nobody subscribed yet
        async with bus.listen_job(31) as waiter:
            with trio.fail_after(30):
                got = await waiter.wait()
        assert got.data.job_id.value == 31
        async with bus.listen_job(32) as never:  # no result stored: keeps waiting
            with trio.move_on_after(0.5) as scope:
                await never.wait()
            assert scope.cancelled_caught
        nursery.cancel_scope.cancel()
    await bus.aclose()
