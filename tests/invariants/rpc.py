"""gRPC calls from trio: grpclib is an asyncio library, so every call hops through trio-asyncio
(the same bridge the server uses). A channel is opened per server generation, so calls after a
restart reach the new process on its new port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import trio
import trio_asyncio
from grpclib.client import Channel

from jobworkerp.testing.server import Client
from tests.invariants.server import InvariantServer

T = TypeVar("T")
CALL_TIMEOUT_S = 15.0  # control-plane calls; waiting calls pass their own


def _client_for(port: int) -> Client:
    from jobworkerp.proto.jobworkerp import ext
    from jobworkerp.proto.jobworkerp import service as svc

    channel = Channel("127.0.0.1", port)
    return Client(channel, svc.RunnerServiceStub(channel), svc.WorkerServiceStub(channel),
                  svc.JobServiceStub(channel), svc.JobResultServiceStub(channel),
                  svc.JobStatusServiceStub(channel), svc.JobRestoreServiceStub(channel),
                  ext.BulkJobServiceStub(channel))


async def _collect(stream: AsyncIterator[T]) -> list[T]:
    return [item async for item in stream]


class Rpc:
    """Calls `fn(client)` on the current server from trio code."""

    def __init__(self, server: InvariantServer) -> None:
        self.server = server
        self._clients: dict[int, Client] = {}
        self._lock = trio.Lock()  # one channel per generation: a second one would leak unclosed

    async def _client(self) -> Client:
        async with self._lock:
            gen = self.server.generation
            client = self._clients.get(gen)
            if client is None:
                for old in self._clients.values():
                    old.channel.close()
                self._clients.clear()
                port = self.server.port

                async def make() -> Client:  # grpclib wants its channel made on the asyncio loop
                    return _client_for(port)

                client = self._clients[gen] = await trio_asyncio.aio_as_trio(make)()
            return client

    async def call(self, fn: Callable[[Client], Awaitable[T]]) -> T:
        client = await self._client()

        async def run() -> T:
            return await fn(client)

        return await trio_asyncio.aio_as_trio(run)()

    async def collect(self, fn: Callable[[Client], AsyncIterator[T]]) -> list[T]:
        client = await self._client()

        async def run() -> list[T]:
            return await _collect(fn(client))

        return await trio_asyncio.aio_as_trio(run)()

    def close(self) -> None:
        for client in self._clients.values():
            client.channel.close()
        self._clients.clear()


@asynccontextmanager
async def open_rpc(server: InvariantServer) -> AsyncIterator[Rpc]:
    """An Rpc to `server`; must run inside `trio_asyncio.open_loop()` (one loop per trio run)."""
    rpc = Rpc(server)
    try:
        yield rpc
    finally:
        rpc.close()
