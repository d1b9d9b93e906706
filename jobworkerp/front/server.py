"""Serve the gRPC services on GRPC_ADDR (through the asyncio bridge), with the optional auth token
and TLS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import trio
import trio_asyncio
from grpclib.events import RecvRequest, listen
from grpclib.server import Server

from jobworkerp.front.decoding import RequestCodec, guard_servable

if TYPE_CHECKING:
    import asyncio
    import ssl


def _require_token(server: Server, token: str, metadata_key: str) -> None:
    async def check(event: RecvRequest) -> None:
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError

        if event.method_name.startswith("/grpc.health.v1."):
            return
        if event.metadata.get(metadata_key) != token:
            raise GRPCError(Status.UNAUTHENTICATED, f"missing or wrong {metadata_key} metadata")

    listen(server, RecvRequest, check)


async def serve_grpc(
    handlers: Sequence[Any],
    host: str,
    port: int,
    *,
    auth_token: str | None = None,
    auth_metadata_key: str = "jobworkerp-auth",
    ssl_context: ssl.SSLContext | None = None,
    stopping: trio.Event | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled (or `stopping` is set); reports the bound port via task_status.

    Every handler reads its request through `guard_servable` and `RequestCodec`, so bytes that are
    not a request message are answered INVALID_ARGUMENT instead of grpclib's UNKNOWN. With
    `ssl_context` the listener speaks only TLS (front/tls.py builds it)."""
    server = Server([guard_servable(h) for h in handlers], codec=RequestCodec())
    if auth_token:
        _require_token(server, auth_token, auth_metadata_key)
    await trio_asyncio.aio_as_trio(server.start)(host, port, ssl=ssl_context)
    try:
        listener = cast("asyncio.Server | None", server._server)  # grpclib types it as AbstractServer
        bound_port = listener.sockets[0].getsockname()[1] if listener else port
        task_status.started(bound_port)
        if stopping is None:
            await trio.sleep_forever()
        else:
            await stopping.wait()
    finally:
        with trio.CancelScope(shield=True):
            server.close()
            await trio_asyncio.aio_as_trio(server.wait_closed)()
