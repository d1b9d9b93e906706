"""Send arbitrary bytes to a gRPC method and see what status comes back.

grpclib's client encodes through its codec; `PassThroughCodec` hands bytes through unchanged, so
a request "message" can be any bytes (truncated, random, with invalid UTF-8 or huge varints).
`RawBody.frame` goes one level lower and sends the HTTP/2 DATA payload itself, so the gRPC
framing (the 5-byte length prefix) can lie too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grpclib.client import Channel
from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError, StreamTerminatedError

from jobworkerp.front.services import build_services


class PassThroughCodec(CodecBase):
    """Requests are bytes already; replies are kept as the bytes that came."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


def raw_channel(port: int) -> Channel:
    return Channel("127.0.0.1", port, codec=PassThroughCodec())


@dataclass(frozen=True)
class Method:
    path: str
    cardinality: Cardinality
    request_type: type

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def served_methods() -> list[Method]:
    """Every method the server serves, read from the same service objects it builds (`app` is
    only stored by their constructors), so a method added to the proto is fuzzed without an edit."""
    handlers: dict[str, Handler] = {}
    for servable in build_services(None):
        handlers.update(servable.__mapping__())
    return [Method(path, h.cardinality, h.request_type) for path, h in sorted(handlers.items())]


@dataclass(frozen=True)
class RawBody:
    """What a request carries: `message` (framed by grpclib), `frame` (the DATA payload as is), or
    neither (a request that ends without any message)."""

    message: bytes | None = None
    frame: bytes | None = None

    def describe(self) -> str:
        if self.message is not None:
            return f"message of {len(self.message)} bytes {self.message[:48]!r}"
        if self.frame is not None:
            return f"DATA frame of {len(self.frame)} bytes {self.frame[:48]!r}"
        return "no message"


@dataclass
class Reply:
    """The call's outcome. `status` None: no status came — `broken` says why (the client's
    deadline passed first, or the server reset the stream)."""

    status: Status | None
    message: str = ""
    replies: list[bytes] = field(default_factory=list)
    broken: str | None = None

    @property
    def waited_out(self) -> bool:
        return self.broken is not None and self.broken.startswith("TimeoutError")


async def _send(stream: Any, body: RawBody) -> None:
    if body.message is not None:
        await stream.send_message(body.message, end=True)
    elif body.frame is not None:
        await stream.send_request()
        await stream._stream.send_data(body.frame, end_stream=True)  # below grpclib's framing
        stream._end_done = True  # what ending through grpclib would have recorded
    else:
        await stream.send_request(end=True)


async def call_raw(channel: Channel, method: Method, body: RawBody, deadline_s: float) -> Reply:
    """Call `method` with `body` and collect every reply until the status arrives."""
    reply = Reply(Status.OK)
    try:
        # Streaming on our side whatever the method is: grpclib's client would refuse to end a unary
        # request without a message. The server goes by its own idea of the method.
        async with channel.request(method.path, Cardinality.STREAM_STREAM, bytes, bytes, timeout=deadline_s) as stream:
            await _send(stream, body)
            async for item in stream:
                reply.replies.append(item)
    except GRPCError as e:
        reply.status, reply.message = e.status, e.message or ""
    except TimeoutError:  # grpclib's deadline
        reply.status, reply.broken = None, "TimeoutError: the client's deadline passed"
    except StreamTerminatedError as e:
        reply.status, reply.broken = None, f"StreamTerminatedError: {e}"
    return reply
