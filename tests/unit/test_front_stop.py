"""A stopped front refuses requests that arrive on connections opened before it stopped.

grpclib's `Server.close` stops the listener and cancels running handlers, but an open HTTP/2
connection stays open and its new requests used to be handled as usual — after the server had
gone on to close its storage (a Delete retried against a closed database for a minute, and the
stopping server outlived the 30 s its supervisor gave it: soak seeds 655119, 829754)."""

from __future__ import annotations

import pytest
import trio
import trio_asyncio
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.health.service import Health
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from jobworkerp.aio import open_asyncio_bridge
from jobworkerp.front.server import serve_grpc

pytestmark = pytest.mark.timeout(60)


async def test_a_request_on_a_connection_left_open_after_the_stop_is_refused_as_unavailable() -> None:
    async with open_asyncio_bridge():
        stopping = trio.Event()
        async with trio.open_nursery() as nursery:
            port = await nursery.start(lambda task_status: serve_grpc(
                [Health()], "127.0.0.1", 0, max_message_bytes=1 << 20, stopping=stopping, task_status=task_status))

            async def open_channel() -> Channel:
                return Channel("127.0.0.1", port)

            channel = await trio_asyncio.aio_as_trio(open_channel)()
            stub = HealthStub(channel)
            before = await trio_asyncio.aio_as_trio(stub.Check)(HealthCheckRequest(), timeout=30)
            stopping.set()  # the front stops; this connection stays open
        # serve_grpc has returned: the listener is closed, its handlers are done.
        try:
            with pytest.raises(GRPCError) as refused:
                await trio_asyncio.aio_as_trio(stub.Check)(HealthCheckRequest(), timeout=30)
        finally:
            channel.close()
    assert before.status == HealthCheckResponse.SERVING
    assert refused.value.status == Status.UNAVAILABLE
    assert "stopping" in (refused.value.message or "")
