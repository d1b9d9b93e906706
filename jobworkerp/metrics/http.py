"""A minimal HTTP/1.1 server for `GET /metrics` on trio sockets (h11, as front/grpc_web.py).

Nothing in it blocks the event loop: the page is rendered by a trio function (its storage read
bounded in time) and written with trio. Any other path is 404, any other method 405. Bounded so
a stray client cannot hold resources: at most MAX_CONNECTIONS open connections (more are closed
at once), an idle connection is closed after IDLE_S, and a request body (a GET has none) is
read up to MAX_BODY_BYTES before the connection is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import h11
import trio

log = logging.getLogger(__name__)

PATH = b"/metrics"
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"  # the Prometheus text format
_TEXT = b"text/plain; charset=utf-8"
IDLE_S = 30.0
MAX_CONNECTIONS = 32
MAX_BODY_BYTES = 64 * 1024
_RECEIVE = 64 * 1024

Render = Callable[[], Awaitable[bytes]]


class MetricsHttpServer:
    def __init__(self, render: Render) -> None:
        self._render = render
        self._open = 0

    async def serve(self, listeners: Sequence[trio.abc.Listener[Any]]) -> None:
        """Serve on the listeners until cancelled."""
        await trio.serve_listeners(self._connection, list(listeners))

    async def _connection(self, stream: trio.abc.Stream) -> None:
        if self._open >= MAX_CONNECTIONS:
            await stream.aclose()
            return
        self._open += 1
        try:
            async with stream:
                await self._exchange(h11.Connection(h11.SERVER), stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        except Exception:  # a scraper's connection must never take the server down with it
            log.exception("metrics: a connection to /metrics failed")
        finally:
            self._open -= 1

    async def _exchange(self, conn: h11.Connection, stream: trio.abc.Stream) -> None:
        """Answer requests on one connection until it closes, idles or misbehaves."""
        while True:
            try:
                request = await _next(conn, stream)
                if not isinstance(request, h11.Request):
                    return  # closed, idle, or not a request
                if not await _skip_body(conn, stream):
                    return
            except h11.RemoteProtocolError as e:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await _send(conn, stream, e.error_status_hint, b"bad request\n", close=True,
                                headers=[(b"content-type", _TEXT)])
                return
            status, body, headers = await self._answer(request)
            await _send(conn, stream, status, body, head=request.method == b"HEAD", headers=headers)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _answer(self, request: h11.Request) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if request.target.split(b"?", 1)[0] != PATH:
            return 404, b"not found: metrics are at /metrics\n", [(b"content-type", _TEXT)]
        if request.method not in (b"GET", b"HEAD"):
            return 405, b"method not allowed\n", [(b"content-type", _TEXT), (b"allow", b"GET, HEAD")]
        try:
            return 200, await self._render(), [(b"content-type", CONTENT_TYPE)]
        except Exception:
            log.exception("metrics: could not render /metrics")
            return 500, b"internal error (details in the server log)\n", [(b"content-type", _TEXT)]


async def _next(conn: h11.Connection, stream: trio.abc.Stream) -> Any:
    """The connection's next h11 event; None when it idles for IDLE_S."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        with trio.move_on_after(IDLE_S):
            conn.receive_data(bytes(await stream.receive_some(_RECEIVE)))
            continue
        return None


async def _skip_body(conn: h11.Connection, stream: trio.abc.Stream) -> bool:
    """Read the request to its end, discarding any body; False if it is too long or cut off."""
    read = 0
    while True:
        event = await _next(conn, stream)
        if isinstance(event, h11.EndOfMessage):
            return True
        if not isinstance(event, h11.Data):
            return False
        read += len(event.data)
        if read > MAX_BODY_BYTES:
            return False


async def _send(conn: h11.Connection, stream: trio.abc.Stream, status: int, body: bytes, *,
                headers: list[tuple[bytes, bytes]], head: bool = False, close: bool = False) -> None:
    fields = [(b"content-length", str(len(body)).encode()), *headers]
    if close:
        fields.append((b"connection", b"close"))
    out = conn.send(h11.Response(status_code=status, headers=fields)) or b""
    if not head:
        out += conn.send(h11.Data(data=body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(out)
