"""One Storage bundle per combination users run: memory+SQLite (Standalone), Redis+SQLite and
Redis+MySQL (Scalable). The same tests run against each (River-style conformance)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from jobworkerp.aio import call_asyncio, close_redis, open_asyncio_bridge, open_redis
from jobworkerp.storage import Storage, memory_storage, redis_storage
from jobworkerp.storage.rdb import Repository
from jobworkerp.storage.sqlite import SqliteRepository
from tests.services import REDIS_URL, require_redis
from tests.storage.mysql_support import mysql_repository, temporary_database

COMBINATIONS = ["memory+sqlite", "redis+sqlite", "redis+mysql"]


@pytest.fixture(params=COMBINATIONS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    queue_side, rdb_side = request.param.split("+")
    async with open_asyncio_bridge():
        if rdb_side == "mysql":
            async with temporary_database(tmp_path) as params:
                async with _bundle(queue_side, mysql_repository(params)) as bundle:
                    yield bundle
        else:
            async with _bundle(queue_side, SqliteRepository(str(tmp_path / "db.sqlite3"))) as bundle:
                yield bundle



@asynccontextmanager
async def _bundle(queue_side: str, repo: Repository) -> AsyncIterator[Storage]:
    await repo.open()
    try:
        if queue_side == "memory":
            yield memory_storage(repo)
            return
        require_redis()
        prefix = f"jwtest:{uuid.uuid4().hex[:12]}:"
        client = open_redis(REDIS_URL)
        try:
            async with redis_storage(client, prefix, repo, queue_lease_ms=1000) as bundle:
                yield bundle
        finally:
            keys = await call_asyncio(client.keys, f"{prefix}*")
            if keys:
                await call_asyncio(client.delete, *keys)
            await close_redis(client)
    finally:
        await repo.aclose()
