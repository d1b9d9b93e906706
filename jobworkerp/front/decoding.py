"""Request decoding: bytes a client sent that are not the method's request message are the
client's error (INVALID_ARGUMENT naming the message type), never grpclib's UNKNOWN "Internal
Server Error".

grpclib decodes a request inside its own `recv_message`, before our handler runs, and answers
any exception there as UNKNOWN. Two hooks keep that from happening:

- `RequestCodec` (the server's codec) parses strictly — the upb parser with the committed
  descriptors, as worker settings and job args are checked (`jobworkerp/descriptors.py`) —
  because betterproto2 accepts truncated bytes silently and fails on others with whatever
  exception its reader meets (EOFError, KeyError, UnicodeDecodeError, ...);
- `guard_servable` wraps every handler so that a request message longer than
  GRPC_MAX_MESSAGE_BYTES is refused from its length prefix (`message_limit.py`), and a
  malformed gRPC frame (a body shorter than its length prefix, a compressed message) or a unary
  call that sent no message at all is refused as such; the generated handlers would otherwise
  fail an `assert request is not None`.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Mapping
from typing import Any

from grpclib.const import Handler, Status
from grpclib.exceptions import GRPCError
from h2.exceptions import StreamClosedError

from jobworkerp.descriptors import check_message_bytes
from jobworkerp.front.message_limit import lift_limit, refuse_oversized
from jobworkerp.proto.message_pool import default_message_pool
from jobworkerp.wire_codec import MessageCodec

REASON_LIMIT = 200  # characters of the parser's complaint kept in the status message


def message_name(message_type: type) -> str:
    """The protobuf full name of a request class (betterproto2 or google.protobuf)."""
    url = default_message_pool.type_to_url.get(message_type)  # type: ignore[arg-type]
    if url is not None:
        return url.rsplit("/", 1)[-1]
    descriptor = getattr(message_type, "DESCRIPTOR", None)
    return descriptor.full_name if descriptor is not None else message_type.__name__


def _reason(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text[:REASON_LIMIT]


class RequestCodec(MessageCodec):
    """The project's codec (`jobworkerp.wire_codec`), with request bytes checked by the strict
    parser first."""

    def decode(self, data: bytes, message_type: Any) -> Any:
        name = message_name(message_type)
        try:
            if message_type in default_message_pool.type_to_url:  # ours: betterproto2 is lenient
                check_message_bytes(name, data)
            return super().decode(data, message_type)
        except Exception as e:
            raise GRPCError(Status.INVALID_ARGUMENT, f"request: not a valid {name} message ({_reason(e)})") from None


# What grpclib's `recv_message` raises for a frame it cannot read (grpclib/stream.py): a length
# prefix cut short (struct.error), a body shorter than its prefix (its `assert`), and the
# compressed flag (NotImplementedError; no compression is negotiated).
_FRAME_ERRORS = (struct.error, AssertionError, NotImplementedError)


class _RequestStream:
    """A server stream whose `recv_message` refuses what cannot be a request of its method."""

    def __init__(self, stream: Any, name: str, unary: bool) -> None:
        self._stream = stream
        self._name = name
        self._unary = unary

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._stream, attribute)

    def __aiter__(self) -> _RequestStream:  # `async for` looks these up on the type, not through __getattr__
        return self

    async def __anext__(self) -> Any:
        message = await self.recv_message()
        if message is None:
            raise StopAsyncIteration
        return message

    async def recv_message(self) -> Any:
        try:
            message = await self._stream.recv_message()
        except _FRAME_ERRORS as e:
            raise GRPCError(Status.INVALID_ARGUMENT,
                            f"request: not a readable gRPC message frame for {self._name} ({_reason(e)})") from None
        if message is None and self._unary:
            raise GRPCError(Status.INVALID_ARGUMENT, f"request: no {self._name} message was sent")
        return message


def _guard(handler: Handler, max_message_bytes: int) -> Handler:
    name = message_name(handler.request_type)
    unary = not handler.cardinality.client_streaming
    func = handler.func

    async def guarded(stream: Any) -> None:
        refuse_oversized(stream, max_message_bytes, name)
        try:
            await func(_RequestStream(stream, name, unary))
        except StreamClosedError:
            # The client went away (connection lost, stream reset) just as the answer was
            # sent: h2 refuses the write before grpclib's cancellation reaches the handler.
            # grpclib expects CancelledError for a client gone and logs anything else as
            # "ERROR Failed to handle cancellation" (seen in CI under load).
            raise asyncio.CancelledError() from None
        finally:
            lift_limit(stream)

    return handler._replace(func=guarded)


class _GuardedServable:
    def __init__(self, servable: Any, max_message_bytes: int) -> None:
        self._servable = servable
        self._max_message_bytes = max_message_bytes

    def __mapping__(self) -> Mapping[str, Handler]:
        return {path: _guard(handler, self._max_message_bytes)
                for path, handler in self._servable.__mapping__().items()}


def guard_servable(servable: Any, max_message_bytes: int) -> Any:
    """`servable` with every handler reading its request through `_RequestStream`, refusing a
    message longer than `max_message_bytes` before reading it (`message_limit.py`)."""
    return _GuardedServable(servable, max_message_bytes)
