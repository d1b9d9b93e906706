"""CPU per Redis round trip from trio code: through the asyncio bridge, on trio's own socket, and
through the pipeliner that every job's Redis work goes through.

Usage: python bench/redis_round_trip.py [round-trips-per-case] [redis-url]

One caller, one round trip at a time, each a pipeline of the two commands a job's settle
typically sends (an HSET and an EVALSHA): `run_redis_pipeline` (redis-py's asyncio pipeline
through trio-asyncio), `RedisWire.round_trip` (storage/redis_wire.py), and `RedisPipeliner`
(storage/redis_pipeline.py: the HSET queued with `submit`, the EVALSHA a `call`, as a front
confirms a job's status with its push) — its cost over the bare socket is what a quiet
system's job pays for the pipelining. Prints this process's CPU time and the wall time per round
trip for each, twice, alternating. Uses database 13 and one key.
"""

from __future__ import annotations

import os
import sys
import time

import trio

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from jobworkerp.aio import call_asyncio, close_redis, open_asyncio_bridge, open_redis, run_redis_pipeline  # noqa: E402
from jobworkerp.storage.redis_pipeline import RedisPipeliner  # noqa: E402
from jobworkerp.storage.redis_wire import RedisWire  # noqa: E402

KEY = "jwbench:round-trip"


async def main(count: int, url: str) -> None:
    async with open_asyncio_bridge():
        client = open_redis(url, db=13)
        wire = RedisWire(client)
        pipeliner = RedisPipeliner(client)
        try:
            sha = await call_asyncio(client.script_load, "return 1")
            ops = [lambda p: p.hset(KEY, "f", "0"), lambda p: p.evalsha(sha, 1, KEY)]

            async def bridged() -> object:
                return await run_redis_pipeline(client, ops)

            async def trio_socket() -> object:
                return await wire.round_trip(ops)

            async def pipelined() -> object:
                ahead = pipeliner.submit(ops[0])
                value = await pipeliner.call(ops[1])
                if ahead is not None:
                    await ahead.reply()
                return value

            async with trio.open_nursery() as nursery:
                await nursery.start(pipeliner.run)
                for _ in range(2):
                    for name, fn in (("asyncio bridge", bridged), ("trio socket", trio_socket),
                                     ("pipeliner", pipelined)):
                        await fn()  # connected before it is timed
                        started, began = time.process_time(), time.perf_counter()
                        for _ in range(count):
                            await fn()
                        used, took = time.process_time() - started, time.perf_counter() - began
                        print(f"{name:15s} {1e6 * used / count:7.1f} us CPU, {1e6 * took / count:7.1f} us wall per "
                              f"round trip ({count} round trips)")
                nursery.cancel_scope.cancel()
        finally:
            await wire.aclose()
            await call_asyncio(client.delete, KEY)
            await close_redis(client)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 3000,
             sys.argv[2] if len(sys.argv) > 2 else "redis://127.0.0.1:6379")
