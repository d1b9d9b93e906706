"""A request message larger than GRPC_MAX_MESSAGE_BYTES is refused from its 5-byte gRPC prefix,
before its body is read.

grpclib has no such limit (vmagamedov/grpclib#195): its `recv_message` reads the declared length
and then buffers that many bytes, so one 300 MB request held 1.5 GB of the server's memory while
the codec parsed it. The length is known from the prefix, so the check costs nothing and what a
refused request leaves in memory is bounded by HTTP/2 flow control: grpclib acknowledges DATA
(opens the window again) only as it is read, so at most one stream window (4 MiB by default,
`grpclib.config.Configuration.http2_stream_window_size`) is buffered before the refusal, and the
stream is reset after it (grpclib resets a stream answered with a non-OK status), so h2 drops
what the client still sends.

grpclib reads a request through the `recv_data` of its protocol stream (`grpclib.protocol.Stream`,
the private `_stream` of the server stream): first the 5-byte prefix, then the body. That method
is wrapped on the one stream object of each request, for as long as its handler runs
(`lift_limit` takes the wrapper off: it refers to the stream it is set on, and that reference
cycle left every request's stream, and all it holds, to the garbage collector); grpclib 0.4.9 is
pinned in pyproject.toml.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError

PREFIX_BYTES = 5  # compressed flag (1 byte) + big-endian message length (4 bytes)


def refuse_oversized(stream: Any, limit: int, name: str) -> None:
    """Make `stream` (a grpclib server stream) refuse, with RESOURCE_EXHAUSTED, a message whose
    declared length passes `limit`, before it reads the message's body; until `lift_limit`."""
    data_stream = stream._stream
    read: Callable[[int], Awaitable[bytes]] = data_stream.recv_data
    expecting_prefix = True

    async def recv_data(size: int) -> bytes:
        nonlocal expecting_prefix
        if not expecting_prefix:  # the body the previous prefix announced: already checked
            expecting_prefix = True
            return await read(size)
        chunk = await read(size)
        if size == PREFIX_BYTES and len(chunk) == PREFIX_BYTES:
            declared = struct.unpack(">I", chunk[1:])[0]
            if declared > limit:
                raise GRPCError(Status.RESOURCE_EXHAUSTED,
                                f"request: the {name} message is {declared} bytes, more than the server "
                                f"accepts ({limit} bytes, GRPC_MAX_MESSAGE_BYTES)")
            expecting_prefix = False
        return chunk

    data_stream.recv_data = recv_data


def lift_limit(stream: Any) -> None:
    """Take `refuse_oversized`'s wrapper off `stream` again (the handler is done reading)."""
    stream._stream.__dict__.pop("recv_data", None)
