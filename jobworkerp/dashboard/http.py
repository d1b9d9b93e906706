"""The dashboard's HTTP/1.1 server: h11 on trio sockets, as front/grpc_web.py serves grpc-web.

Why not an ASGI server: the dashboard is a handful of HTML pages, form posts, two JSON endpoints
and one event stream; h11 (already a dependency, through httpx and grpc-web) keeps it plain trio
code with trio's timeouts and cancellation, and no second event-loop integration.

Every limit is on the server's side: a request head is at most MAX_HEAD_BYTES, a body at most
MAX_BODY_BYTES (413 beyond it, checked on Content-Length before anything is read, and again while
reading a chunked body), each read waits at most READ_TIMEOUT_S, an idle kept-alive connection is
closed after IDLE_TIMEOUT_S. A handler that raises answers 500 with an error id that the log line
also has, never the exception's text.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlsplit

import h11
import trio

from jobworkerp.http1 import RECEIVE_BYTES, ClientGone, H11Connection, peer_address

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # a form with a job's args or a worker's settings; far below GRPC_MAX_MESSAGE_BYTES
MAX_FORM_FIELDS = 2000
READ_TIMEOUT_S = 30.0
IDLE_TIMEOUT_S = 60.0

Headers = list[tuple[str, str]]
Send = Callable[[bytes], Awaitable[None]]


class HttpError(Exception):
    """Answer with this status and a short plain message (already safe: shown as text)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    peer: str
    secure: bool  # served over TLS: cookies get the Secure flag
    state: dict[str, object] = field(default_factory=dict)  # what the server attaches (the session)

    def arg(self, name: str, default: str = "") -> str:
        """A query parameter (its first value), stripped."""
        values = self.query.get(name)
        return values[0].strip() if values else default

    def cookie(self, name: str) -> str | None:
        raw = self.headers.get("cookie")
        if not raw:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return None
        morsel = jar.get(name)
        return morsel.value if morsel is not None else None

    def form(self) -> dict[str, list[str]]:
        """An application/x-www-form-urlencoded body (the only kind the dashboard's forms send)."""
        kind = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise HttpError(415, "forms must be sent as application/x-www-form-urlencoded")
        try:
            return parse_qs(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                            max_num_fields=MAX_FORM_FIELDS)
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "the form is not valid UTF-8 or has too many fields") from None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: Headers = field(default_factory=list)
    # An open-ended answer (Server-Sent Events): called with a function that sends one chunk,
    # cancelled when the client hangs up or the server stops.
    stream: Callable[[Send], Awaitable[None]] | None = None


def text_response(status: int, message: str) -> Response:
    return Response(status, message.encode(), "text/plain; charset=utf-8")


def redirect(location: str, headers: Headers | None = None) -> Response:
    """303 See Other: after a POST the browser GETs the page (a reload does not post again)."""
    return Response(303, b"", "text/plain; charset=utf-8", [("location", location), *(headers or [])])


Handler = Callable[[Request], Awaitable[Response]]


class _Connection(H11Connection):
    async def read_body(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self.next_event(READ_TIMEOUT_S)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY_BYTES:
                    raise HttpError(413, f"request body over {MAX_BODY_BYTES} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise ClientGone()

    async def wait_for_hangup(self) -> None:
        """Return once the client closes (an event stream's only way to learn it)."""
        while True:
            try:
                data = await self.stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return


def _headers_of(request: h11.Request) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.headers:
        name, value = raw_name.decode("ascii").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class HttpServer:
    """Serves `handler` on each connection; `common_headers` go on every answer."""

    def __init__(self, handler: Handler, common_headers: Headers, *, secure: bool) -> None:
        self._handler = handler
        self._common = common_headers
        self._secure = secure

    async def serve_connection(self, stream: trio.abc.Stream) -> None:
        conn = _Connection(stream)
        peer = peer_address(stream)
        try:
            while True:
                event = await conn.next_event(IDLE_TIMEOUT_S)
                if not isinstance(event, h11.Request):
                    return
                keep = await self._answer(conn, event, peer)
                if not keep or conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
                    return
                conn.h11.start_next_cycle()
        except h11.RemoteProtocolError:
            if conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await self._send_quietly(conn, text_response(400, "bad request"))
        except (ClientGone, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        except Exception:
            log.exception("dashboard: the connection from %s failed", peer)
        finally:
            await trio.aclose_forcefully(stream)

    async def _answer(self, conn: _Connection, event: h11.Request, peer: str) -> bool:
        """Read the request, run the handler, write the answer; whether the connection may be kept."""
        headers = _headers_of(event)
        try:
            length = int(headers.get("content-length", "0") or "0")
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            await self._send(conn, text_response(413, f"request body over {MAX_BODY_BYTES} bytes"), close=True)
            return False
        try:
            body = await conn.read_body()
        except HttpError as e:
            await self._send(conn, text_response(e.status, e.message), close=True)
            return False
        target = urlsplit(event.target.decode("ascii", "replace"))
        request = Request(event.method.decode("ascii").upper(), target.path or "/",
                          parse_qs(target.query, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS),
                          headers, body, peer, self._secure)
        try:
            response = await self._handler(request)
        except HttpError as e:
            response = text_response(e.status, e.message)
        except Exception as e:
            error_id = uuid.uuid4().hex[:16]
            log.error("dashboard: %s %s failed (error id %s)", request.method, request.path, error_id, exc_info=e)
            response = text_response(500, f"internal error (error id {error_id}; details in the server log)")
        if response.stream is not None:
            await self._stream(conn, response)
            return False
        await self._send(conn, response)
        return True

    def _head(self, response: Response, extra: Headers) -> h11.Response:
        headers = [("content-type", response.content_type), *self._common, *response.headers, *extra]
        return h11.Response(status_code=response.status, headers=headers,
                            reason=HTTPStatus(response.status).phrase.encode())

    async def _send(self, conn: _Connection, response: Response, *, close: bool = False) -> None:
        extra = [("content-length", str(len(response.body)))]
        if close:
            extra.append(("connection", "close"))
        await conn.send(self._head(response, extra), h11.Data(data=response.body), h11.EndOfMessage())

    async def _send_quietly(self, conn: _Connection, response: Response) -> None:
        try:
            await self._send(conn, response, close=True)
        except (ClientGone, h11.LocalProtocolError):
            pass

    async def _stream(self, conn: _Connection, response: Response) -> None:
        """Headers now, then whatever the stream sends, until it ends or the client hangs up."""
        assert response.stream is not None
        await conn.send(self._head(response, [("connection", "close")]))

        async def send_chunk(data: bytes) -> None:
            await conn.send(h11.Data(data=data))

        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                await conn.wait_for_hangup()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await response.stream(send_chunk)
            nursery.cancel_scope.cancel()
        if conn.h11.our_state is h11.SEND_BODY:
            await conn.send(h11.EndOfMessage())
