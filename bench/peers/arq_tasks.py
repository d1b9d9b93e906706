"""arq peer: `arq peers.arq_tasks.WorkerSettings` runs these; `client` enqueues and awaits a result.

arq has no per-job push of results: `Job.result` polls Redis every `poll_delay`, and the worker
polls its queue every `poll_delay` too, so both are set from BENCH_POLL_MS (see `peers`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from arq.connections import RedisSettings, create_pool

from peers import REDIS_HOST, REDIS_PORT, concurrency, poll_seconds, redis_db

REDIS = RedisSettings(host=REDIS_HOST, port=REDIS_PORT, database=redis_db())


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def sleep_ms(ctx: dict[str, Any], ms: int) -> None:
    await asyncio.sleep(ms / 1000)


class WorkerSettings:
    functions = [noop, sleep_ms]
    redis_settings = REDIS
    max_jobs = concurrency()
    poll_delay = poll_seconds()


@asynccontextmanager
async def client(job: str, sleep: int) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """`job` is `noop` or `sleep_ms` (then with `sleep` ms)."""
    pool = await create_pool(REDIS)
    args = (sleep,) if job == "sleep_ms" else ()
    poll = poll_seconds()

    async def call() -> None:
        enqueued = await pool.enqueue_job(job, *args)
        assert enqueued is not None
        await enqueued.result(timeout=120, poll_delay=poll)

    try:
        yield call
    finally:
        await pool.aclose()
