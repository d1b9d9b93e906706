"""The process's shared pub/sub connection (storage/redis_subscription.py): confirmed subscribes,
unsubscribes that count only once Redis confirms them, and channels subscribed again when Redis
comes back after going away."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from jobworkerp.aio import call_asyncio, close_redis, open_asyncio_bridge, open_redis
from jobworkerp.errors import is_outage
from jobworkerp.storage.redis_subscription import RedisSubscription
from tests.chaos.redis_instance import RedisInstance

pytestmark = pytest.mark.timeout(60)


async def numsub(client: Any, channel: str) -> int:
    return dict(await call_asyncio(client.pubsub_numsub, channel))[channel.encode()]


async def test_subscribe_is_confirmed_and_unsubscribe_counts_once_redis_confirms_it(redis) -> None:
    client, prefix = redis
    topic = f"{prefix}t"
    sub = RedisSubscription(client)
    send, received = trio.open_memory_channel[tuple[bytes, bytes]](10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sub.messages, lambda channel, data: send.send_nowait((channel, data)))
        await sub.subscribe(topic)
        assert sub.holds(topic) and await numsub(client, topic) == 1  # confirmed before it returned
        await call_asyncio(client.publish, topic, b"one")
        assert await received.receive() == (topic.encode(), b"one")
        await sub.unsubscribe(topic)
        assert sub.holds(topic)  # sent, not yet confirmed (no checkpoint since)
        await sub.subscribe(f"{prefix}marker")  # confirmed after the unsubscribe: Redis answers in order
        assert not sub.holds(topic) and await numsub(client, topic) == 0
        nursery.cancel_scope.cancel()
    await sub.aclose()


async def test_channels_held_are_subscribed_again_when_redis_comes_back(tmp_path: Path) -> None:
    with RedisInstance(tmp_path).running() as instance:
        async with open_asyncio_bridge():
            client = open_redis(instance.url)
            sub = RedisSubscription(client)
            send, received = trio.open_memory_channel[tuple[bytes, bytes]](100)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(sub.messages, lambda channel, data: send.send_nowait((channel, data)))
                    await sub.subscribe("kept")
                    await sub.subscribe("dropped")
                    instance.stop()
                    try:  # Redis away: refused, or written to a connection that is gone
                        await sub.unsubscribe("dropped")
                    except Exception as e:
                        assert is_outage(e)
                    assert sub.holds("dropped")  # never confirmed
                    with pytest.raises(Exception) as refused:  # a new topic while Redis is away
                        await sub.subscribe("while-away")
                    assert is_outage(refused.value) and not sub.holds("while-away")
                    instance.start()
                    # Both are held, so both are subscribed again; publish until the reader is back.
                    got: tuple[bytes, bytes] | None = None
                    while got is None:
                        await call_asyncio(client.publish, "kept", b"after")
                        with trio.move_on_after(0.05):
                            got = await received.receive()
                    assert got == (b"kept", b"after")
                    assert await numsub(client, "dropped") == 1
                    await sub.unsubscribe("dropped")  # Redis is back: now it goes
                    await sub.subscribe("marker")  # confirmed after the unsubscribe: Redis answers in order
                    assert not sub.holds("dropped") and await numsub(client, "dropped") == 0
                    assert await numsub(client, "kept") == 1 and await numsub(client, "while-away") == 0
                    nursery.cancel_scope.cancel()
            finally:
                await sub.aclose()
                await close_redis(client)
