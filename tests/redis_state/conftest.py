from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jobworkerp.aio import call_asyncio, close_redis, open_asyncio_bridge, open_redis
from tests.services import REDIS_URL, require_redis


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
