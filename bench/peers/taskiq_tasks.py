"""taskiq peer with taskiq-redis: `taskiq worker peers.taskiq_tasks:broker --workers 1
--max-async-tasks N` runs these; `client` kicks a task and waits for its result.

`wait_result` polls the result backend every `check_interval` (BENCH_POLL_MS, see `peers`); the
worker itself blocks on the Redis list, so it needs no poll interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

from peers import poll_seconds, redis_url

broker = ListQueueBroker(url=redis_url()).with_result_backend(
    RedisAsyncResultBackend(redis_url=redis_url(), result_ex_time=600))


@broker.task
async def noop() -> None:
    return None


@broker.task
async def sleep_ms(ms: int) -> None:
    await asyncio.sleep(ms / 1000)


@asynccontextmanager
async def client(job: str, sleep: int) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    await broker.startup()
    poll = poll_seconds()

    async def call() -> None:
        task = await (sleep_ms.kiq(sleep) if job == "sleep_ms" else noop.kiq())
        result = await task.wait_result(check_interval=poll, timeout=120)
        result.raise_for_error()

    try:
        yield call
    finally:
        await broker.shutdown()
