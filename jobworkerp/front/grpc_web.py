"""grpc-web (USE_GRPC_WEB): browsers call the services over HTTP/1.1 on GRPC_WEB_ADDR.

Why a listener of its own rather than the gRPC port: grpclib owns that socket and speaks only
HTTP/2, so serving HTTP/1.1 there would mean sniffing each connection's first bytes in front of
grpclib's asyncio protocol; a second port keeps grpclib untouched and this front small.

Why h11 on trio sockets: h11 (python-hyper, the HTTP/1.1 state machine httpx itself uses) is
I/O-free, so the connection handling is plain trio code — timeouts, cancellation at a stop, TLS
through `trio.SSLStream` — and nothing new crosses into asyncio but the handler call itself.
A full ASGI server (hypercorn) would bring its own loop integration, workers and settings for
what is one POST per call here.

Each call runs the very handler the gRPC server runs: the `__mapping__()` of the service objects
`build_services` makes (front/services.py), called through the asyncio bridge (`aio.call_asyncio_task`)
with a stream object that has what those handlers use of grpclib's (`recv_message`,
`send_message`, `send_trailing_metadata`). What grpclib and front/server.py do around a handler
is done here the same way: the token check (front/auth.py, sharing the gRPC server's per-address
failure count), GRPC_MAX_MESSAGE_BYTES from the length prefix and the strict request decoding
(front/decoding.py `RequestCodec`), `grpc-timeout`, and errors as a grpc-status in the trailer
frame (front/grpc_web_wire.py), never a crash of the listener. A client that hangs up mid-call
has its handler cancelled, as on HTTP/2 (a DIRECT Enqueue then deletes its job).

Not served: client-streaming and bidirectional methods (server reflection's), which grpc-web
cannot carry; they answer UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
import math
import ssl
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import h11
import trio
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import Deadline, decode_timeout

from jobworkerp.aio import AsyncioTaskCancelled, call_asyncio_task, call_trio
from jobworkerp.front.auth import TokenCheck
from jobworkerp.front.decoding import RequestCodec, message_name
from jobworkerp.front.grpc_web_cors import CorsPolicy, Headers
from jobworkerp.front.grpc_web_wire import Mode, RequestBody, content_mode, encode_body, message_frame, trailer_frame
from jobworkerp.http1 import MAX_HEAD_BYTES, RECEIVE_BYTES, ClientGone, H11Connection, peer_address

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 75.0  # a kept-alive connection with no new request is closed after this
READ_TIMEOUT_S = 60.0  # each read of a request (its head, a piece of its body, a TLS handshake)
STOP_GRACE_S = 5.0  # at a stop, how long calls cut off get to write their UNAVAILABLE trailer
HEALTH_PREFIX = "/grpc.health.v1."  # open without the token, as on the gRPC port (front/server.py)
Outcome = tuple[Status, str | None]


class _HungUp(Exception):
    """The client closed its connection while its call ran."""


_DEADLINE: Outcome = (Status.DEADLINE_EXCEEDED, None)  # marker: the call's grpc-timeout passed


class _Connection(H11Connection):
    """One HTTP/1.1 connection, and the way a grpc-web call learns its client hung up."""

    async def wait_for_hangup(self) -> None:
        """Return once the client hangs up. What it sends meanwhile (a next request on the same
        connection) is kept for h11; past one request head it counts as hanging up, and so does
        a client that shuts down its sending side: HTTP/1.1 has no other way to say "gone"."""
        while len(self.h11.trailing_data[0]) <= MAX_HEAD_BYTES:
            try:
                data = await self.stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            self.h11.receive_data(bytes(data))

    async def read_body(self, body: RequestBody | None, discard_limit: int) -> GRPCError | None:
        """Read the request body into `body` (or drop it, for a refused call) and return a
        refusal `body` made (too long). A body dropped past `discard_limit` bytes is left unread:
        the connection is then closed after the answer."""
        if self.h11.they_are_waiting_for_100_continue:
            if body is None:
                return None  # the client sends no body until told to
            await self.send(h11.InformationalResponse(status_code=100, headers=[]))
        refusal: GRPCError | None = None
        dropped = 0
        while self.h11.their_state is h11.SEND_BODY:
            event = await self.next_event(READ_TIMEOUT_S)
            if not isinstance(event, h11.Data):
                continue
            if body is not None and refusal is None:
                try:
                    body.feed(event.data)
                except GRPCError as e:
                    refusal = e
                continue
            dropped += len(event.data)
            if dropped > discard_limit:
                break
        return refusal


class _Answer:
    """The HTTP response of one call: headers with its first bytes, then the messages, then the
    trailer frame. A unary answer is one write with a Content-Length; a stream is chunked."""

    def __init__(self, conn: _Connection, mode: Mode, cors: Headers) -> None:
        self._conn = conn
        self._mode = mode
        self._headers = [("content-type", mode.value), *cors]
        self.started = False
        self.broken = False  # a write was cut off: the body is not whole, the connection must close

    async def start(self) -> None:
        """Send the headers of a server stream before its first message: a stream may wait long
        for it (ListenStreamByWorker), and a client learns at once that its call was taken."""
        self.started = True
        await self._conn.send(h11.Response(status_code=200, headers=self._headers))

    async def push(self, frame: bytes) -> None:
        """One message of a server stream (called from the handler through `aio.call_trio`)."""
        self.broken = True
        await self._conn.send(h11.Data(data=encode_body(self._mode, frame)))
        self.broken = False

    async def finish(self, status: Status, message: str | None, frames: Sequence[bytes] = ()) -> None:
        trailer = trailer_frame(status, message)
        if self.started:
            await self._conn.send(h11.Data(data=encode_body(self._mode, trailer)), h11.EndOfMessage())
            return
        body = encode_body(self._mode, b"".join([*frames, trailer]))
        headers = [*self._headers, ("content-length", str(len(body)))]
        await self._conn.send(h11.Response(status_code=200, headers=headers), h11.Data(data=body), h11.EndOfMessage())


class _WebStream:
    """What a grpclib handler uses of its `grpclib.server.Stream`, for one grpc-web call: the
    request (already read and decoded), and its messages and status going back."""

    def __init__(self, request: Any, reply_type: Any, push: Callable[[bytes], Awaitable[None]] | None,
                 metadata: dict[str, str], timeout_s: float | None) -> None:
        self._request = request
        self._reply_type = reply_type
        self._push = push  # None: a unary answer, kept in `frames` and written with the status
        self._codec = RequestCodec()
        self.metadata = metadata
        self.deadline = None if timeout_s is None else Deadline.from_timeout(timeout_s)
        self.frames: list[bytes] = []
        self.status: Outcome = (Status.OK, None)

    async def recv_message(self) -> Any:
        request, self._request = self._request, None
        return request

    async def send_initial_metadata(self, *, metadata: Any = None) -> None:
        """Headers go with the first message."""

    async def send_message(self, message: Any) -> None:
        frame = message_frame(self._codec.encode(message, self._reply_type))
        if self._push is None:
            self.frames.append(frame)
        else:
            await call_trio(self._push, frame)

    async def send_trailing_metadata(self, *, status: Status = Status.OK, status_message: str | None = None,
                                     status_details: Any = None, metadata: Any = None) -> None:
        self.status = (status, status_message)


async def _run_handler(func: Callable[[Any], Awaitable[None]], stream: _WebStream) -> Outcome | None:
    """Asyncio side of a call: the handler's status, or None when the client is gone."""
    try:
        await func(stream)
    except GRPCError as e:
        return e.status, e.message
    except ClientGone:
        return None
    except Exception as e:  # grpclib would answer UNKNOWN; say where the details are instead
        error_id = uuid.uuid4().hex[:16]
        log.error("unexpected error while serving a grpc-web request (error id %s)", error_id, exc_info=e)
        return Status.INTERNAL, f"internal error (error id {error_id}; details in the server log)"
    return stream.status


def _headers_of(request: h11.Request) -> dict[str, str]:
    """Request headers by lower-case name; repeated ones joined as HTTP allows. Values decode
    losslessly (surrogateescape), so the token check sees the bytes that were sent."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.headers:
        name, value = raw_name.decode("ascii").lower(), raw_value.decode("utf-8", "surrogateescape")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class GrpcWebServer:
    """Answers grpc-web calls with the handlers of `services` (their `__mapping__()`)."""

    def __init__(self, services: Sequence[Any], *, token_check: TokenCheck | None, auth_metadata_key: str,
                 max_message_bytes: int, cors_origins: Sequence[str]) -> None:
        self._handlers: dict[str, Handler] = {path: handler for service in services
                                              for path, handler in service.__mapping__().items()}
        self._token_check = token_check
        self._auth_key = auth_metadata_key
        self._max_message_bytes = max_message_bytes
        # A refused body is read and dropped up to this (two messages' worth, base64 included),
        # so the refusal reaches the client: closing on unread bytes resets the connection,
        # and the client's kernel may drop the answer with it.
        self._discard_limit = 2 * max_message_bytes
        self._cors = CorsPolicy(cors_origins, auth_metadata_key)
        self._codec = RequestCodec()
        self.stopping = False
        self._running: set[trio.CancelScope] = set()  # the handler runs of calls in flight
        self._answering = 0
        self._idle = trio.Event()
        self._idle.set()

    async def stop(self) -> None:
        """Refuse new calls, cut off the running ones with UNAVAILABLE (a page learns why its
        stream ended, instead of a network error), and wait (at most STOP_GRACE_S) until their
        answers are written."""
        self.stopping = True
        for scope in list(self._running):
            scope.cancel()
        with trio.move_on_after(STOP_GRACE_S):
            await self._idle.wait()

    async def serve_connection(self, stream: trio.abc.Stream) -> None:
        """Requests of one connection, one after another, until either side closes it. Nothing
        a client sends ends more than its own connection."""
        conn = _Connection(stream)
        peer = peer_address(stream)
        try:
            while True:
                event = await conn.next_event(IDLE_TIMEOUT_S)
                if not isinstance(event, h11.Request):
                    return  # ConnectionClosed
                self._answering += 1
                self._idle = trio.Event() if self._answering == 1 else self._idle
                try:
                    keep = await self._answer(conn, event, peer)
                finally:
                    self._answering -= 1
                    if self._answering == 0:
                        self._idle.set()
                if not keep or self.stopping:
                    return
                if conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
                    return
                conn.h11.start_next_cycle()
        except h11.RemoteProtocolError as e:
            await self._bad_request(conn, e)
        except (ClientGone, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        except Exception:
            log.exception("grpc-web: the connection from %s failed", peer)
        finally:
            await trio.aclose_forcefully(stream)

    async def _bad_request(self, conn: _Connection, error: h11.RemoteProtocolError) -> None:
        if conn.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        text = f"not an HTTP/1.1 request: {error}\n".encode()
        headers = [("content-type", "text/plain; charset=utf-8"), ("content-length", str(len(text))),
                   ("connection", "close")]
        try:
            await conn.send(h11.Response(status_code=error.error_status_hint, headers=headers), h11.Data(data=text),
                            h11.EndOfMessage())
        except (ClientGone, h11.LocalProtocolError):
            pass

    async def _refuse_http(self, conn: _Connection, status_code: int, text: str, headers: Headers) -> bool:
        """An HTTP-level refusal (the request is no grpc-web call), with a text the sender can read."""
        await conn.read_body(None, self._discard_limit)
        body = f"{text}\n".encode()
        headers = [*headers, ("content-type", "text/plain; charset=utf-8"), ("content-length", str(len(body)))]
        await conn.send(h11.Response(status_code=status_code, headers=headers), h11.Data(data=body), h11.EndOfMessage())
        return True

    async def _answer(self, conn: _Connection, request: h11.Request, peer: str) -> bool:
        """Answer one request; False if the connection must close afterwards."""
        headers = _headers_of(request)
        origin = headers.get("origin")
        if not self._cors.allows(origin):
            return await self._refuse_http(conn, 403, f"origin {origin} may not call this server "
                                                      "(it is not in GRPC_WEB_CORS_ORIGINS)", [])
        cors = self._cors.response_headers(origin)
        if request.method == b"OPTIONS":
            preflight = self._cors.preflight_headers(origin, headers.get("access-control-request-headers"))
            await conn.read_body(None, self._discard_limit)
            await conn.send(h11.Response(status_code=204, headers=[*preflight, ("allow", "POST, OPTIONS")]),
                            h11.EndOfMessage())
            return True
        if request.method != b"POST":
            return await self._refuse_http(conn, 405, "grpc-web calls are POST requests",
                                           [*cors, ("allow", "POST, OPTIONS")])
        mode = content_mode(headers.get("content-type"))
        if mode is None:
            return await self._refuse_http(conn, 415, "content-type: expected application/grpc-web, "
                                                      "application/grpc-web+proto, application/grpc-web-text or "
                                                      "application/grpc-web-text+proto", cors)
        answer = _Answer(conn, mode, cors)
        path = request.target.decode("ascii", "replace")
        try:
            handler, timeout_s = self._admit(path, headers, peer)
        except GRPCError as refusal:
            await conn.read_body(None, self._discard_limit)
            await answer.finish(refusal.status, refusal.message)
            return True
        body = RequestBody(mode, message_name(handler.request_type), self._max_message_bytes)
        try:
            too_long = await conn.read_body(body, self._discard_limit)
            if too_long is not None:
                raise too_long
            message = self._codec.decode(body.message(), handler.request_type)
        except GRPCError as e:
            await answer.finish(e.status, e.message)
            return True
        ran = await self._run(conn, answer, handler, message, headers, timeout_s)
        if ran is None or answer.broken:
            return False  # the client is gone, or a message was cut off mid-write
        (status, status_message), frames = ran
        await answer.finish(status, status_message, frames)
        return True

    def _admit(self, path: str, headers: dict[str, str], peer: str) -> tuple[Handler, float | None]:
        """The handler of `path`, and the call's timeout; GRPCError for a call that is not let
        through, checked in grpclib's order: method, grpc-timeout, then the token."""
        if self.stopping:  # as front/server.py `_Closing` on the gRPC port
            raise GRPCError(Status.UNAVAILABLE, "the server is stopping; retry against a running server")
        handler = self._handlers.get(path)
        if handler is None:
            raise GRPCError(Status.UNIMPLEMENTED, f"method not found: {path[:200]}")
        if handler.cardinality.client_streaming:
            raise GRPCError(Status.UNIMPLEMENTED, f"{path} is a client-streaming method; grpc-web carries "
                                                  "unary and server-streaming calls only (use the gRPC port)")
        timeout_s = None
        if (raw := headers.get("grpc-timeout")) is not None:
            try:
                timeout_s = decode_timeout(raw.strip())
            except ValueError:
                raise GRPCError(Status.INVALID_ARGUMENT, f"grpc-timeout header: {raw[:40]!r} is not a gRPC "
                                                         "timeout (digits and a unit H, M, S, m, u or n)") from None
        if self._token_check is not None and not path.startswith(HEALTH_PREFIX):
            refusal = self._token_check.refusal(peer, headers.get(self._auth_key))
            if refusal is not None:
                raise GRPCError(Status.UNAUTHENTICATED, f"{self._auth_key} metadata: {refusal}")
        return handler, timeout_s

    async def _run(self, conn: _Connection, answer: _Answer, handler: Handler, message: Any,
                   headers: dict[str, str], timeout_s: float | None) -> tuple[Outcome, list[bytes]] | None:
        """Run the handler until it ends, its grpc-timeout passes or the client hangs up (None);
        its status, and the messages of a unary answer."""
        streaming = handler.cardinality is Cardinality.UNARY_STREAM
        stream = _WebStream(message, handler.reply_type, answer.push if streaming else None, headers, timeout_s)
        if streaming:
            await answer.start()
        hung_up = False
        outcome: Outcome | None = None
        with trio.CancelScope() as stopped:
            self._running.add(stopped)
            try:
                outcome = await self._run_until_hang_up(conn, handler, stream, timeout_s)
            except _HungUp:
                hung_up = True
            finally:
                self._running.discard(stopped)
        if hung_up:
            return None
        if stopped.cancelled_caught:
            return (Status.UNAVAILABLE, "the server stopped while the call ran; retry against a running server"), []
        if outcome is None:  # the handler met a client gone while writing
            return None
        if outcome is _DEADLINE:
            return (Status.DEADLINE_EXCEEDED, f"the call's grpc-timeout ({headers.get('grpc-timeout')}) passed"), []
        return outcome, stream.frames

    async def _run_until_hang_up(self, conn: _Connection, handler: Handler, stream: _WebStream,
                                 timeout_s: float | None) -> Outcome | None:
        """The handler's outcome (`_DEADLINE` once its grpc-timeout passed); `_HungUp` if the
        client hangs up meanwhile."""
        hung_up = False
        outcome: Outcome | None = None
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal hung_up
                await conn.wait_for_hangup()
                hung_up = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            with trio.move_on_after(math.inf if timeout_s is None else timeout_s) as deadline:
                try:
                    outcome = await call_asyncio_task(_run_handler, handler.func, stream)
                except AsyncioTaskCancelled:  # the bridge is closing under a call still running
                    outcome = None
            nursery.cancel_scope.cancel()
        if hung_up:
            raise _HungUp()
        return _DEADLINE if deadline.cancelled_caught else outcome


async def serve_grpc_web(
    services: Sequence[Any],
    host: str,
    port: int,
    *,
    token_check: TokenCheck | None,
    auth_metadata_key: str = "jobworkerp-auth",
    max_message_bytes: int,
    cors_origins: Sequence[str] = (),
    ssl_context: ssl.SSLContext | None = None,
    stopping: trio.Event | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve grpc-web on host:port until cancelled (or `stopping` is set); reports the bound
    port. With `ssl_context` (front/tls.py, ALPN http/1.1) the listener speaks only TLS. At the
    stop, open connections are closed and calls still running are cancelled, as grpclib's
    `Server.close` does on the gRPC port."""
    server = GrpcWebServer(services, token_check=token_check, auth_metadata_key=auth_metadata_key,
                           max_message_bytes=max_message_bytes, cors_origins=cors_origins)
    listeners: list[Any] = await trio.open_tcp_listeners(port, host=host)
    bound_port = listeners[0].socket.getsockname()[1]
    if ssl_context is not None:
        listeners = [trio.SSLListener(listener, ssl_context) for listener in listeners]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.serve_listeners, server.serve_connection, listeners))
        task_status.started(bound_port)
        if stopping is None:
            await trio.sleep_forever()
        else:
            await stopping.wait()
        await server.stop()
        nursery.cancel_scope.cancel()
