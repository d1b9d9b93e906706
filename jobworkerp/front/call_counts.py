"""Report every answered gRPC call (method, status code) to a callback: the metrics' call counter.

grpclib tells a server's listeners of each request (`RecvRequest`, with the method) and of the
trailers that end its answer (`SendTrailingMetadata`, with the status), but not which request
trailers belong to. Both are dispatched in the request's own asyncio task, so the method is
kept in a context variable from one to the other: each request task has its own context.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

from grpclib.events import RecvRequest, SendTrailingMetadata, listen
from grpclib.server import Server

_method: ContextVar[str | None] = ContextVar("grpc_method", default=None)


def count_calls(server: Server, on_call: Callable[[str, str], None]) -> None:
    """Call `on_call(method, status name)` once per call the server answers. Register it before
    any listener that may refuse a request, so refused calls are counted too (a listener that
    raises stops the ones after it). A call whose client hung up before its answer has no
    trailers, and is not counted; nor are requests for methods the server does not have."""

    async def on_request(event: RecvRequest) -> None:
        _method.set(event.method_name)

    async def on_trailers(event: SendTrailingMetadata) -> None:
        method = _method.get()
        if method is not None:
            on_call(method, event.status.name)

    listen(server, RecvRequest, on_request)
    listen(server, SendTrailingMetadata, on_trailers)
