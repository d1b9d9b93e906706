"""A bare grpclib echo server and its client: the ceiling of "one unary RPC per job".

Plain asyncio, one unary method that returns the request, no storage, no runner hosts: whatever
the job server adds on top of one RPC per job shows as the distance from this column. The
messages are protobuf `BytesValue`s carrying about as many bytes as a no-op job's request.

Run as `python -m perfkit.echo PORT` (with `bench/` on PYTHONPATH).
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
    asyncio.run(serve(int(sys.argv[1])))
