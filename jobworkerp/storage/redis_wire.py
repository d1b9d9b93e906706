"""Redis connections on trio's own sockets, for the per-job round trips and the pub/sub reader.

Why: a round trip through the asyncio bridge (trio -> asyncio hop, asyncio stream and
transport, redis-py's pipeline and connection, back to trio) costs several times the CPU of the
same round trip on a trio socket (`bench/redis_round_trip.py` prints both). Every Scalable job's
push, RUNNING status and settle go through the pipeliner's flusher (storage/redis_pipeline.py),
a woken popper's BLPOP + POP through its channel's connection (storage/redis_queue.py), and its
result reaches a DIRECT caller's front through the pub/sub reader (storage/redis_subscription.py):
on the bridge these were the larger part of a Scalable job's CPU when the system was not saturated.

What is redis-py's stays redis-py's: callers still queue their commands on a redis-py pipeline
(the same `lambda p: p.hset(...)` ops as everywhere else), redis-py's connection class holds the
address, credentials, database and TLS context of the client's pool, hiredis parses the replies
with redis-py's error classes, and redis-py's response callbacks turn them into the values
redis-py would have returned. The socket and the waiting are trio's, and so is the packing of
commands (`RedisSocket.pack`: redis-py's bytes, tested equal, at less than half its cost).

A connection that fails (Redis gone, the connection cut, cancelled while replies were on their
way) is closed and the failure raised as redis-py's ConnectionError (an outage to
`errors.is_outage`); it connects again when next used.
"""

from __future__ import annotations

import inspect
import os
import select
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import trio
from redis._parsers.base import BaseParser
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import AuthenticationError, InvalidResponse, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

Op = Callable[[Any], Any]  # queues one command on the redis-py pipeline it is given
CONNECT_TIMEOUT_S = 5.0  # when the client's pool names none
READ_SIZE = 65536
_MORE = object()  # hiredis: the buffer holds no complete reply yet
_BROKEN = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


class RedisSocket:
    """One connection with the settings of a redis.asyncio client's pool. Sends may come from
    several tasks (they are serialized); replies are read by one task at a time."""

    def __init__(self, client: Any) -> None:
        pool = client.connection_pool
        # Never connected: it packs commands and knows where and how to connect (TLS, auth, db).
        self.spec = pool.connection_class(**pool.connection_kwargs)
        self._stream: trio.abc.Stream | None = None
        self._fd = -1  # the plain socket's descriptor, written and read directly; -1 over TLS
        self._poll: Any = None  # select.poll of that descriptor, for `stale`
        self._reader: Any = None
        self._ready = False  # connected and the handshake done
        self._sending = trio.StrictFIFOLock()

    @property
    def address(self) -> str:
        spec = self.spec
        return getattr(spec, "path", None) or f"{spec.host}:{spec.port}"

    @property
    def connected(self) -> bool:
        """Connected, and past the handshake (whose replies `connect` reads itself)."""
        return self._ready

    def stale(self) -> bool:
        """Whether a connection with no reply outstanding has something to read: Redis closed it
        (an idle-client `timeout`, CLIENT KILL, a restart) or sent what nobody asked for. Sending
        on it would fail commands that Redis never saw, so it is better replaced first. Plain
        sockets only: over TLS the server may send session tickets at any time."""
        return self._poll is not None and bool(self._poll.poll(0))

    def pack(self, commands: Sequence[Sequence[Any]]) -> bytes:
        """The commands in Redis's protocol: the bytes redis-py's `pack_commands` makes, built
        with less work per argument (the settle script alone has ~15): bytes, str and int are
        encoded here, anything else by redis-py's encoder (floats, memoryviews, and the
        DataError it raises for None or bool). A command name with spaces ("CLIENT SETNAME")
        is split into words, as redis-py does."""
        encoder = self.spec.encoder
        encoding, errors = encoder.encoding, encoder.encoding_errors
        out: list[bytes] = []
        for command in commands:
            name = command[0]
            words = name.encode().split() if isinstance(name, str) else name.split() if b" " in name else [name]
            out.append(b"*%d\r\n" % (len(words) + len(command) - 1))
            for arg in (*words, *command[1:]):
                kind = type(arg)
                if kind is bytes:
                    data = arg
                elif kind is str:
                    data = arg.encode(encoding, errors)
                elif kind is int:
                    data = b"%d" % arg
                else:
                    data = bytes(encoder.encode(arg))
                out.append(b"$%d\r\n%b\r\n" % (len(data), data))
        return b"".join(out)

    async def connect(self) -> None:
        """Open the connection and say what redis-py says on a new one (RESP version and
        credentials, client name, database); a refusal is raised, the connection closed."""
        spec = self.spec
        limit = getattr(spec, "socket_connect_timeout", None) or CONNECT_TIMEOUT_S
        try:
            with trio.fail_after(limit):
                stream = await self._open()
        except trio.TooSlowError as e:
            raise RedisTimeoutError(f"Redis at {self.address}: no connection within {limit} s") from e
        except _BROKEN as e:
            raise RedisConnectionError(f"Redis at {self.address}: {_describe(e)}") from e
        self._stream = stream
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        if self._fd >= 0:
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)
        options: dict[str, Any] = {"protocolError": InvalidResponse, "replyError": BaseParser.parse_error,
                                   "notEnoughData": _MORE}
        if spec.encoder.decode_responses:
            options.update(encoding=spec.encoder.encoding, errors=spec.encoder.encoding_errors)
        self._reader = hiredis.Reader(**options)
        try:
            for command in self._handshake():
                await self.send(self.pack([command]))
                reply = await self.next_reply()
                if isinstance(reply, Exception):
                    if command[0] in ("AUTH", "HELLO"):
                        raise AuthenticationError(f"Redis at {self.address}: {reply}")
                    raise RedisConnectionError(f"Redis at {self.address}: {command[0]} refused: {reply}")
        except BaseException:
            await self.aclose()
            raise
        self._ready = True

    async def aclose(self) -> None:
        stream, self._stream, self._fd, self._reader, self._ready = self._stream, None, -1, None, False
        self._poll = None
        if stream is not None:
            await trio.aclose_forcefully(stream)

    async def send(self, payload: bytes) -> None:
        """Written at once when the socket takes it (trio's send_all always waits a scheduling
        round first), the rest the usual way; a broken connection raises ConnectionError. A send
        cut off part way (cancelled) closes the connection: what follows a partial command on
        it would be read by Redis as that command's rest."""
        stream = self._stream
        if stream is None:
            raise RedisConnectionError(f"Redis at {self.address}: not connected")
        try:
            self._sending.acquire_nowait()
        except trio.WouldBlock:
            await self._sending.acquire()
        try:
            if self._fd >= 0:
                try:
                    written = os.write(self._fd, payload)
                except BlockingIOError:
                    written = 0
                payload = payload[written:]
                if not payload:
                    return
            try:
                await stream.send_all(payload)
            except BaseException:
                await self.aclose()
                raise
        except _BROKEN as e:
            raise RedisConnectionError(f"Redis at {self.address}: {_describe(e)}") from e
        finally:
            self._sending.release()

    async def next_reply(self) -> Any:
        """The next reply (an error reply as its redis-py exception, not raised); waits for it."""
        while True:
            reader = self._reader
            if reader is None:
                raise RedisConnectionError(f"Redis at {self.address}: not connected")
            reply = reader.gets()
            if reply is not _MORE:
                return reply
            reader.feed(await self._read())

    async def _read(self) -> bytes | bytearray:
        stream = self._stream
        if stream is None:
            raise RedisConnectionError(f"Redis at {self.address}: not connected")
        try:
            if self._fd < 0:
                chunk = await stream.receive_some(READ_SIZE)
            else:
                fd = self._fd
                while True:
                    await trio.lowlevel.wait_readable(fd)
                    try:
                        chunk = os.read(fd, READ_SIZE)  # (EINTR is retried by Python itself)
                        break
                    except BlockingIOError:
                        continue
        except _BROKEN as e:
            raise RedisConnectionError(f"Redis at {self.address}: {_describe(e)}") from e
        if not chunk:
            raise RedisConnectionError(f"Redis at {self.address} closed the connection")
        return chunk

    async def _open(self) -> trio.abc.Stream:
        spec = self.spec
        path = getattr(spec, "path", None)
        if path:
            return await trio.open_unix_socket(path)
        stream: trio.abc.Stream = await trio.open_tcp_stream(spec.host, spec.port)
        tls = getattr(spec, "ssl_context", None)
        if tls is not None:  # built (and cached by redis-py) off the event loop: it reads CA and key files
            context = await trio.to_thread.run_sync(tls.get)
            ssl_stream = trio.SSLStream(stream, context,
                                        server_hostname=spec.host if context.check_hostname else None)
            await ssl_stream.do_handshake()
            stream = ssl_stream
        return stream

    def _handshake(self) -> list[tuple[Any, ...]]:
        spec = self.spec
        if getattr(spec, "credential_provider", None) is not None:
            raise RedisConnectionError("a Redis credential provider is not supported on this connection")
        commands: list[tuple[Any, ...]] = []
        auth = tuple(a for a in (spec.username, spec.password) if a)
        if str(spec.protocol) == "3":
            if len(auth) == 1:
                auth = ("default", *auth)
            commands.append(("HELLO", 3, *(("AUTH", *auth) if auth else ())))
        elif auth:
            commands.append(("AUTH", *auth))
        if spec.client_name:
            commands.append(("CLIENT", "SETNAME", spec.client_name))
        if spec.db:
            commands.append(("SELECT", spec.db))
        return commands


class RedisWire:
    """Round trips of one task at a time: a pipeline of commands out, each one's value back."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._socket = RedisSocket(client)

    async def round_trip(self, ops: Sequence[Op]) -> list[Any]:
        """Send the ops' commands together and return each one's value, or its error (a
        ResponseError) in its place; a failure of the connection itself is raised."""
        pipe = self._client.pipeline(transaction=False)
        for op in ops:
            queued = op(pipe)  # the pipeline itself, for a command queued on it
            if inspect.iscoroutine(queued):  # an asyncio-only op (a Script called on the pipeline)
                queued.close()
                raise TypeError("an op for a Redis round trip must queue its command without awaiting")
        commands = list(pipe.command_stack)
        sock = self._socket
        if sock.connected and sock.stale():
            await sock.aclose()
        try:
            if not sock.connected:
                await sock.connect()
            await sock.send(sock.pack([args for args, _ in commands]))
            replies = [await sock.next_reply() for _ in commands]
            for reply in replies:  # as redis-py: e.g. LOADING, from a Redis still starting, is an outage
                if isinstance(reply, RedisConnectionError):
                    raise reply
        except BaseException:
            await sock.aclose()  # a reply left unread must not meet the next round trip
            raise
        return [_value(pipe.response_callbacks, args, options, reply)
                for (args, options), reply in zip(commands, replies, strict=True)]

    async def aclose(self) -> None:
        await self._socket.aclose()


def _describe(error: BaseException) -> str:
    """The error and what caused it: trio's BrokenResourceError carries the TLS failure (a
    certificate the client does not trust) only as its cause."""
    text = f"{type(error).__name__}: {error}"
    cause = error.__cause__
    return text if cause is None else f"{text} ({type(cause).__name__}: {cause})"


def _value(callbacks: dict[Any, Any], args: tuple[Any, ...], options: dict[str, Any], reply: Any) -> Any:
    """What redis-py's pipeline would return for the command (`Redis.parse_response`)."""
    if isinstance(reply, ResponseError):
        return options[EMPTY_RESPONSE] if EMPTY_RESPONSE in options else reply
    callback = callbacks.get(args[0])
    if callback is None:
        return reply
    kwargs = {k: v for k, v in options.items() if k not in (EMPTY_RESPONSE, NEVER_DECODE, "keys")}
    value = callback(reply, **kwargs)
    if inspect.iscoroutine(value):
        value.close()
        raise TypeError(f"redis-py's reply callback of {args[0]!r} needs asyncio")
    return value
