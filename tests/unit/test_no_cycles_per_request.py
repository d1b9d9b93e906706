"""A request leaves nothing for the garbage collector: what it made is freed by reference counting
as soon as it is answered.

Each request used to leave ~50 objects in reference cycles — trio-asyncio's `cancel` override on
the future of every hop into trio (holding the call's result: a job's whole JobResult), and the
message-size check wrapped onto grpclib's stream — which only the collector could free: under 50
DIRECT callers it ran a young collection every ~50 ms, each a ~2 ms stall of the event loop,
about 6 % of the server's CPU and most of its 1-caller p99 (aio.py, front/message_limit.py).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
import trio_asyncio
from grpclib.client import Channel
from grpclib.health.service import Health
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from jobworkerp.aio import call_trio, iterate_trio, open_asyncio_bridge
from jobworkerp.front.server import serve_grpc

pytestmark = pytest.mark.timeout(60)


async def _cyclic_garbage(run: Callable[[], Awaitable[None]]) -> int:
    """How many objects only the collector could free after `await run()` (asyncio side)."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await trio_asyncio.aio_as_trio(run)()
        gc.collect()
        return len(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def test_requests_and_hops_into_trio_leave_no_reference_cycles() -> None:
    async def double(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return 2 * x

    async def numbers(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await trio.lowlevel.checkpoint()
            yield i

    async with open_asyncio_bridge():
        stopping = trio.Event()
        async with trio.open_nursery() as nursery:
            port = await nursery.start(lambda task_status: serve_grpc(
                [Health()], "127.0.0.1", 0, max_message_bytes=1 << 20, stopping=stopping, task_status=task_status))
            channel = await trio_asyncio.aio_as_trio(lambda: _channel(port))()
            stub = HealthStub(channel)

            def workload(n: int) -> Callable[[], Awaitable[None]]:
                async def run() -> None:
                    for i in range(n):  # a gRPC request through the front's guarded handler
                        answer = await stub.Check(HealthCheckRequest(), timeout=30)
                        assert answer.status == HealthCheckResponse.SERVING
                        assert await call_trio(double, i) == 2 * i  # a hop into trio
                    assert [i async for i in iterate_trio(numbers(n))] == list(range(n))
                return run

            try:
                await _cyclic_garbage(workload(5))  # warm: connection, caches, first-use objects
                few = await _cyclic_garbage(workload(20))
                many = await _cyclic_garbage(workload(100))
            finally:
                channel.close()
                stopping.set()
    # What is left does not grow with the number of requests (before: ~45 objects per request).
    assert many - few < 10, (few, many)


async def _channel(port: int) -> Channel:
    return Channel("127.0.0.1", port)
