"""The result bus's Redis subscriptions follow its listeners exactly: one per topic while any
listener of the topic is there, none after the last one left — however a listener leaves (issue
10, scenario 8: Listen calls that hang up; tests/chaos/test_cross_process_races.py)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from jobworkerp.aio import call_asyncio
from jobworkerp.storage.redis_bus import RedisResultBus

pytestmark = pytest.mark.timeout(30)


async def _subscribers(client: Any, topic: str) -> int:
    reply = await call_asyncio(client.pubsub_numsub, topic)
    return int(reply[0][1])


async def _settled(bus: RedisResultBus, client: Any, barrier_job: int) -> None:
    """Wait until the unsubscribes already started have reached Redis. They run one after the
    other in the bus's background nursery, so a listener that comes and goes afterwards, and
    whose own subscription is then seen gone, comes after them."""
    async with bus.listen_job(barrier_job):
        pass
    while True:  # Redis is the only witness of an unsubscribe: ask it until the barrier is gone
        if not await _subscribers(client, bus.job_topic(barrier_job)):
            return
        await trio.sleep(0.01)


async def test_a_listener_cancelled_before_it_subscribed_leaves_the_others_subscribed(redis) -> None:
    """A Listen whose caller hung up before it got to subscribing dropped a subscription it never
    took: the topic's count went to zero and Redis unsubscribed while another listener of the job
    still waited (it then heard of the result only by polling the result key)."""
    client, prefix = redis
    bus = RedisResultBus(client, prefix)
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        async with bus.listen_job(7):
            with trio.CancelScope() as gone:
                gone.cancel()
                async with bus.listen_job(7):
                    pytest.fail("a cancelled listener got its waiter")
            await _settled(bus, client, barrier_job=8)
            still = await _subscribers(client, bus.job_topic(7))
        await _settled(bus, client, barrier_job=9)
        after = await _subscribers(client, bus.job_topic(7))
        nursery.cancel_scope.cancel()
    await bus.aclose()
    assert still == 1, "the remaining listener's subscription was dropped"
    assert after == 0


async def test_listeners_leaving_at_every_step_leave_no_subscription(redis) -> None:
    """Many listeners of a few topics, each cancelled at a different point — before subscribing,
    while the subscription is confirmed, while waiting: once all have left, no topic of theirs
    is subscribed."""
    client, prefix = redis
    bus = RedisResultBus(client, prefix)

    async def leave_after(job_id: int, checkpoints: int) -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as inner:
                async def cancel_later() -> None:
                    for _ in range(checkpoints):
                        await trio.lowlevel.checkpoint()
                    scope.cancel()

                inner.start_soon(cancel_later)
                async with bus.listen_job(job_id) as waiter:
                    await waiter.wait()

    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        async with trio.open_nursery() as listeners:
            for i in range(240):
                listeners.start_soon(leave_after, 20 + i % 3, i % 60)
        await _settled(bus, client, barrier_job=99)
        left = await call_asyncio(client.pubsub_channels, f"{prefix}job_result_changed:*")
        nursery.cancel_scope.cancel()
    await bus.aclose()
    assert left == []


async def test_a_listener_leaving_while_the_bus_stops_does_not_crash_it(redis) -> None:
    """Found by the soak (a server stopping with a Listen still waiting): the listener left after
    the bus's background nursery had begun to close, starting its unsubscribe there raised
    "Nursery is closed to new arrivals", and the stopping server exited with an error."""
    client, prefix = redis
    bus = RedisResultBus(client, prefix)
    async with trio.open_nursery() as outer:
        bus_scope, bus_ended = trio.CancelScope(), trio.Event()

        async def run_bus(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with bus_scope:
                await bus.run(task_status=task_status)
            bus_ended.set()

        await outer.start(run_bus)
        async with bus.listen_job(11):
            bus_scope.cancel()  # the server stops: the bus ends while this listener is still here
            await bus_ended.wait()
        # leaving now must not raise
    await bus.aclose()
    assert await _subscribers(client, bus.job_topic(11)) == 0
