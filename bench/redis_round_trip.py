"""CPU per Redis round trip from trio code: through the asyncio bridge vs on trio's own socket.

Usage: python bench/redis_round_trip.py [round-trips-per-case] [redis-url]

One caller, one round trip at a time, each a pipeline of the two commands a job's settle
typically sends (an HSET and an EVALSHA): `run_redis_pipeline` (redis-py's asyncio pipeline
through trio-asyncio) against `RedisWire.round_trip` (storage/redis_wire.py). Prints this
process's CPU time per round trip for each, twice, alternating. Uses database 13 and one key.
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
from jobworkerp.storage.redis_wire import RedisWire  # noqa: E402

KEY = "jwbench:round-trip"


async def main(count: int, url: str) -> None:
    async with open_asyncio_bridge():
        client = open_redis(url, db=13)
        wire = RedisWire(client)
        try:
            sha = await call_asyncio(client.script_load, "return 1")
            ops = [lambda p: p.hset(KEY, "f", "0"), lambda p: p.evalsha(sha, 1, KEY)]

            async def bridged() -> object:
                return await run_redis_pipeline(client, ops)

            async def trio_socket() -> object:
                return await wire.round_trip(ops)

            for _ in range(2):
                for name, fn in (("asyncio bridge", bridged), ("trio socket", trio_socket)):
                    await fn()  # connected before it is timed
                    started = time.process_time()
                    for _ in range(count):
                        await fn()
                    used = time.process_time() - started
                    print(f"{name:15s} {1e6 * used / count:7.1f} us CPU per round trip ({count} round trips)")
        finally:
            await wire.aclose()
            await call_asyncio(client.delete, KEY)
            await close_redis(client)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 3000,
             sys.argv[2] if len(sys.argv) > 2 else "redis://127.0.0.1:6379")
