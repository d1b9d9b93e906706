from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jobworkerp.front.bridge import call_asyncio, close_redis, open_asyncio_bridge, open_redis

REDIS_URL = "redis://127.0.0.1:6379"
START_REDIS = ('redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
               '--dir /var/lib/redis --logfile /var/log/redis/ci.log')


def require_redis() -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.fail(f"Redis at 127.0.0.1:6379 is not reachable; start it with: {START_REDIS}", pytrace=False)


@pytest.fixture
async def redis() -> AsyncIterator[tuple[Any, str]]:
    """A redis.asyncio client through the bridge and a key prefix of its own (keys deleted after)."""
    require_redis()
    prefix = f"jwtest:{uuid.uuid4().hex[:12]}:"
    async with open_asyncio_bridge():
        client = open_redis(REDIS_URL)
        try:
            yield client, prefix
        finally:
            keys = await call_asyncio(client.keys, f"{prefix}*")
            if keys:
                await call_asyncio(client.delete, *keys)
            await close_redis(client)
