"""dramatiq peer with its Redis broker and results middleware: `dramatiq peers.dramatiq_tasks
--processes 1 --threads N` runs these; `client` sends a message and blocks on its result.

dramatiq's workers are threads, so its no-op is a plain function; the sleep is an `async def`
actor (run on the AsyncIO middleware's event loop, one worker thread waiting for each).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware.asyncio import AsyncIO
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from peers import redis_url

# A blocked `get_result` holds a connection (BLPOP), so a client waiting on 200 results at once
# needs more than redis-py's default pool of 100.
URL = f"{redis_url()}?max_connections=1000"
broker = RedisBroker(url=URL)
broker.add_middleware(AsyncIO())
broker.add_middleware(Results(backend=RedisBackend(url=URL)))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True, max_retries=0)
def noop() -> None:
    return None


@dramatiq.actor(store_results=True, max_retries=0)
async def sleep_ms(ms: int) -> None:
    await asyncio.sleep(ms / 1000)


@contextmanager
def client(job: str, sleep: int) -> Iterator[Callable[[], None]]:
    """A blocking call (the bench runs one per caller thread): send, then wait for the result."""

    def call() -> None:
        message = sleep_ms.send(sleep) if job == "sleep_ms" else noop.send()
        message.get_result(block=True, timeout=120_000)

    try:
        yield call
    finally:
        broker.close()
