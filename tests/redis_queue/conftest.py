"""Fixtures of the Redis job queue tests: a real Redis at 127.0.0.1:6379, a fresh key prefix per test.

Each test gets its own prefix (so parallel `-n` runs never collide) and every key under it is
deleted afterwards. Clients are named after the prefix, so a test can ask Redis (CLIENT LIST)
whether one of *its* poppers is blocked in BLPOP, whatever other tests run at the same time.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio
import trio

from jobworkerp.aio import call_asyncio, close_redis, open_asyncio_bridge
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.queue import Ticket
from jobworkerp.storage.redis_queue import RedisJobQueue
from tests.services import REDIS_URL, require_redis


def job(job_id: int, priority: data.Priority = data.Priority.MEDIUM, args: bytes = b"") -> Ticket:
    return Ticket(data.Job(id=data.JobId(value=job_id), data=data.JobData(priority=priority, args=args)))


@dataclass
class RedisEnv:
    """One test's view of Redis: its prefix, a client for inspection, and queue/client factories."""

    prefix: str
    client: Any
    clients: list[Any] = field(default_factory=list)
    queues: list[RedisJobQueue] = field(default_factory=list)

    @property
    def client_name(self) -> str:
        return self.prefix.replace(":", "-").strip("-")

    def new_client(self) -> Any:
        """Another client (as a second worker process would have); closed by the fixture."""
        c = redis.asyncio.Redis.from_url(REDIS_URL, client_name=self.client_name, max_connections=20)
        self.clients.append(c)
        return c

    def queue(self, instance_id: str, *, client: Any = None, **options: Any) -> RedisJobQueue:
        q = RedisJobQueue(client or self.client, prefix=self.prefix, instance_id=instance_id, **options)
        self.queues.append(q)  # its waiting connections are closed by the fixture
        return q

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await call_asyncio(fn, *args, **kwargs)

    async def blocked_poppers(self) -> int:
        """How many connections of this test are blocked in BLPOP right now (Redis's own view)."""
        clients = await call_asyncio(self.client.client_list)
        return sum(1 for c in clients if c.get("name") == self.client_name and c.get("cmd") == "blpop"
                   and "b" in c.get("flags", ""))

    async def wait_blocked_poppers(self, count: int, within: float = 30.0) -> None:
        """Wait until `count` of our connections sit in BLPOP (Redis is the thing waited on, so poll)."""
        with trio.fail_after(within):
            while True:
                if await self.blocked_poppers() == count:
                    return
                await trio.sleep(0.01)

    async def wait_length(self, q: RedisJobQueue, channel: str, length: int, within: float = 30.0) -> None:
        """Wait until the channel holds `length` jobs (polls Redis: no event to wait on there)."""
        with trio.fail_after(within):
            while True:
                if await q.length(channel) == length:
                    return
                await trio.sleep(0.01)


@pytest.fixture
async def env() -> AsyncIterator[RedisEnv]:
    require_redis()
    prefix = f"jwtest:rq:{uuid.uuid4().hex[:12]}:"
    async with open_asyncio_bridge():
        probe = RedisEnv(prefix, None)
        client = redis.asyncio.Redis.from_url(REDIS_URL, client_name=probe.client_name, max_connections=20)
        e = RedisEnv(prefix, client, [client])
        try:
            yield e
        finally:
            with trio.CancelScope(shield=True):
                for q in e.queues:
                    await q.close_connections()
                keys = await call_asyncio(client.keys, f"{prefix}*")
                if keys:
                    await call_asyncio(client.delete, *keys)
                for c in e.clients:
                    await close_redis(c)
