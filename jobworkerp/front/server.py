"""Serve the gRPC services on GRPC_ADDR (through the asyncio bridge), with the optional auth token
and TLS."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import trio
import trio_asyncio
from grpclib.events import RecvRequest, listen
from grpclib.server import Server

from jobworkerp.front.auth import FailureLimiter, TokenCheck
from jobworkerp.front.call_counts import count_calls
from jobworkerp.front.decoding import RequestCodec, guard_servable
from jobworkerp.front.stream_limit import StreamCappedServer

if TYPE_CHECKING:
    import asyncio
    import ssl


def _peer_of(event: RecvRequest) -> str:
    """The remote address without its port: a client reconnecting gets a new port, not a new count."""
    addr = event.peer.addr()
    return str(addr[0]) if addr else "unknown peer"


def _require_token(server: Server, token: str, metadata_key: str, limiter: FailureLimiter) -> None:
    """Every call but health checks must carry the token (health stays open for probes)."""
    check = TokenCheck(token, limiter)

    async def on_request(event: RecvRequest) -> None:
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError

        if event.method_name.startswith("/grpc.health.v1."):
            return
        refusal = check.refusal(_peer_of(event), event.metadata.get(metadata_key))
        if refusal is not None:
            raise GRPCError(Status.UNAUTHENTICATED, f"{metadata_key} metadata: {refusal}")

    listen(server, RecvRequest, on_request)


class _Closing:
    """Refuses requests once the front has stopped. grpclib's `Server.close` stops the listener
    and cancels running handlers, but a connection that is already open stays open and its new
    requests are still handled — after the server has closed its storage: a Delete that arrived
    so retried against a closed database for a minute, and the stopping server outlived its
    supervisor's patience (soak seeds 655119, 829754)."""

    def __init__(self, server: Server) -> None:
        self.closed = False
        listen(server, RecvRequest, self._on_request)

    async def _on_request(self, event: RecvRequest) -> None:
        if self.closed:
            from grpclib.const import Status
            from grpclib.exceptions import GRPCError

            raise GRPCError(Status.UNAVAILABLE, "the server is stopping; retry against a running server")


async def serve_grpc(
    handlers: Sequence[Any],
    host: str,
    port: int,
    *,
    auth_token: str | None = None,
    auth_metadata_key: str = "jobworkerp-auth",
    failure_limiter: FailureLimiter | None = None,
    max_message_bytes: int,
    max_concurrent_streams: int = 100,
    max_frame_size: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
    stopping: trio.Event | None = None,
    on_call: Callable[[str, str], None] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled (or `stopping` is set); reports the bound port via task_status.
    `on_call(method, status name)` is told of each answered call (front/call_counts.py).

    Every handler reads its request through `guard_servable` and `RequestCodec`, so bytes that are
    not a request message are answered INVALID_ARGUMENT instead of grpclib's UNKNOWN, and a
    message longer than `max_message_bytes` RESOURCE_EXHAUSTED before it is read. With
    `ssl_context` the listener speaks only TLS (front/tls.py builds it). A connection may have at
    most `max_concurrent_streams` streams open at once, and frames of `max_frame_size` bytes
    (front/stream_limit.py)."""
    server = StreamCappedServer([guard_servable(h, max_message_bytes) for h in handlers], codec=RequestCodec(),
                                max_concurrent_streams=max_concurrent_streams, max_frame_size=max_frame_size)
    if on_call is not None:
        count_calls(server, on_call)  # first: calls refused by the listeners below count too
    closing = _Closing(server)  # listens before the token check: a stopping server refuses before checking tokens
    if auth_token:
        _require_token(server, auth_token, auth_metadata_key, failure_limiter or FailureLimiter())
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
            closing.closed = True
            server.close()
            await trio_asyncio.aio_as_trio(server.wait_closed)()
