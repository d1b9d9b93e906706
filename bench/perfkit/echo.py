"""A bare grpclib echo server and its client: the ceiling of "one unary RPC per job".

Plain asyncio, one unary method that returns the request, no storage, no runner hosts: whatever
the job server adds on top of one RPC per job shows as the distance from this column. The
messages are protobuf `BytesValue`s carrying about as many bytes as a no-op job's request.

`--stack` serves the same echo the way this server serves its gRPC front: grpclib on asyncio run
inside trio through this server's bridge (`jobworkerp/aio.py`), with the front's connection
protocol (`front/stream_limit.py`: one socket write per loop turn). What separates that column
from the bare echo is the cost of the fixed stack itself; what separates this server's columns
from it is the job system's own work per job.

Run as `python -m perfkit.echo PORT [--stack]` (with `bench/` and the repository on PYTHONPATH).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from google.protobuf.wrappers_pb2 import BytesValue
from grpclib.client import Channel, UnaryUnaryMethod
from grpclib.const import Cardinality, Handler
from grpclib.server import Server, Stream

PATH = "/bench.Echo/Echo"
PAYLOAD = BytesValue(value=b"x" * 48)


class Echo:
    async def echo(self, stream: Stream[BytesValue, BytesValue]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(request)

    def __mapping__(self) -> dict[str, Handler]:
        return {PATH: Handler(self.echo, Cardinality.UNARY_UNARY, BytesValue, BytesValue)}


async def serve(port: int) -> None:
    server = Server([Echo()])
    await server.start("127.0.0.1", port)
    await server.wait_closed()


def serve_on_stack(port: int) -> None:
    """The echo on trio + trio-asyncio, as the job server's front runs grpclib."""
    import trio
    import trio_asyncio

    from jobworkerp.aio import open_asyncio_bridge
    from jobworkerp.front.stream_limit import StreamCappedServer

    async def main() -> None:
        async with open_asyncio_bridge():
            server = StreamCappedServer([Echo()], max_concurrent_streams=100)
            await trio_asyncio.aio_as_trio(server.start)("127.0.0.1", port)
            await trio.sleep_forever()

    trio.run(main)


@asynccontextmanager
async def client(port: int) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """One HTTP/2 connection shared by all callers, as the job server's client does."""
    channel = Channel("127.0.0.1", port)
    method: UnaryUnaryMethod[BytesValue, BytesValue] = UnaryUnaryMethod(channel, PATH, BytesValue, BytesValue)

    async def call() -> None:
        reply = await method(PAYLOAD)
        assert reply.value == PAYLOAD.value

    try:
        yield call
    finally:
        channel.close()


if __name__ == "__main__":
    if "--stack" in sys.argv[2:]:
        serve_on_stack(int(sys.argv[1]))
    else:
        asyncio.run(serve(int(sys.argv[1])))
