"""The grpc-web wire format, with no I/O: content types, message and trailer frames, the base64
of the text mode, and reading a request body within GRPC_MAX_MESSAGE_BYTES.

grpc-web frames a message as gRPC does (a flag byte and a 4-byte big-endian length, then the
message); the status that HTTP/2 sends as trailers travels as one more frame, flag 0x80, whose
payload is the trailer block (`grpc-status:0\\r\\ngrpc-message:...\\r\\n`), because browsers give a
page no access to HTTP trailers. The text mode (`application/grpc-web-text`) is the same bytes in
base64, for clients that cannot read a binary response as it streams; each chunk of a streamed
answer is its own base64 segment (padding included), so a client decodes it as it arrives.

Refusals use the texts of the gRPC path (front/decoding.py, front/message_limit.py), so a client
sees the same message whichever transport it used.
"""

from __future__ import annotations

import base64
import binascii
import struct
from enum import Enum

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import encode_grpc_message

PREFIX_BYTES = 5  # flag (1 byte) + big-endian message length (4 bytes)
TRAILER_FLAG = 0x80
COMPRESSED_FLAG = 0x01


class Mode(Enum):
    """How the body is carried: raw frames, or their base64."""

    BINARY = "application/grpc-web+proto"
    TEXT = "application/grpc-web-text+proto"


_MODES = {
    "application/grpc-web": Mode.BINARY,
    "application/grpc-web+proto": Mode.BINARY,
    "application/grpc-web-text": Mode.TEXT,
    "application/grpc-web-text+proto": Mode.TEXT,
}


def content_mode(content_type: str | None) -> Mode | None:
    """The mode of a request's Content-Type, or None for anything else (+json included: the
    services speak protobuf only). Parameters such as `; charset=utf-8` are ignored."""
    if content_type is None:
        return None
    return _MODES.get(content_type.split(";", 1)[0].strip().lower())


def message_frame(message: bytes) -> bytes:
    return struct.pack(">BI", 0, len(message)) + message


def trailer_frame(status: Status, message: str | None) -> bytes:
    """The frame that ends every answer: grpc-status, and grpc-message percent-encoded as gRPC
    does (grpclib.metadata.encode_grpc_message), so a message holds no CR or LF."""
    block = f"grpc-status:{status.value}\r\n"
    if message:
        block += f"grpc-message:{encode_grpc_message(message)}\r\n"
    payload = block.encode("ascii")
    return struct.pack(">BI", TRAILER_FLAG, len(payload)) + payload


def encode_body(mode: Mode, data: bytes) -> bytes:
    """Bytes of the answer body as sent: as they are, or one padded base64 segment."""
    return base64.b64encode(data) if mode is Mode.TEXT else data


def decode_text(data: bytes) -> bytes:
    """Base64 that may be several padded segments one after another (a client may send its body
    in pieces, each encoded on its own). Raises ValueError on anything that is not base64."""
    parts = []
    start = 0
    while start < len(data):
        pad = data.find(b"=", start)
        if pad == -1:
            end = len(data)
        else:
            end = pad
            while end < len(data) and data[end] == ord("="):
                end += 1
        try:
            parts.append(base64.b64decode(data[start:end], validate=True))
        except binascii.Error as e:
            raise ValueError(f"not base64 ({e})") from None
        start = end
    return b"".join(parts)


def oversized(name: str, declared: int, limit: int) -> GRPCError:
    return GRPCError(Status.RESOURCE_EXHAUSTED,
                     f"request: the {name} message is {declared} bytes, more than the server accepts "
                     f"({limit} bytes, GRPC_MAX_MESSAGE_BYTES)")


def unreadable(name: str, why: str) -> GRPCError:
    return GRPCError(Status.INVALID_ARGUMENT, f"request: not a readable gRPC message frame for {name} ({why})")


class RequestBody:
    """Collects the body of one unary request: refuses it with RESOURCE_EXHAUSTED as soon as its
    length prefix (or, for a body that never gets to one, its size) passes `limit`, so at most
    one message's worth is ever held, then gives the one message it carries."""

    def __init__(self, mode: Mode, name: str, limit: int) -> None:
        self.mode = mode
        self.name = name
        self.limit = limit
        # what a body carrying one message of `limit` bytes can be, as sent
        frame_cap = PREFIX_BYTES + limit
        self.cap = -(-frame_cap // 3) * 4 if mode is Mode.TEXT else frame_cap
        self._chunks: list[bytes] = []
        self._size = 0
        self._prefix_checked = False

    def feed(self, chunk: bytes) -> None:
        """Add the next piece of the body; raises GRPCError once it is known to be too long."""
        self._chunks.append(chunk)
        self._size += len(chunk)
        if not self._prefix_checked:
            self._check_prefix()
        if self._size > self.cap:
            raise GRPCError(Status.RESOURCE_EXHAUSTED,
                            f"request: the {self.name} request body passes {self.cap} bytes, more than one "
                            f"message of GRPC_MAX_MESSAGE_BYTES ({self.limit} bytes) takes")

    def _check_prefix(self) -> None:
        raw = b"".join(self._chunks)
        if self.mode is Mode.TEXT:
            if len(raw) < 8:  # 8 base64 characters hold the 5-byte prefix
                return
            try:
                head = decode_text(raw[:8])
            except ValueError:
                return  # refused with the whole body, in message()
        else:
            head = raw
        if len(head) < PREFIX_BYTES:
            return
        self._prefix_checked = True
        declared = struct.unpack(">I", head[1:PREFIX_BYTES])[0]
        if declared > self.limit:
            raise oversized(self.name, declared, self.limit)

    def message(self) -> bytes:
        """The one message of the complete body; INVALID_ARGUMENT naming what is wrong with it."""
        data = b"".join(self._chunks)
        if self.mode is Mode.TEXT:
            try:
                data = decode_text(data)
            except ValueError as e:
                raise GRPCError(Status.INVALID_ARGUMENT,
                                f"request: a grpc-web-text body must be base64; the {self.name} request is {e}"
                                ) from None
        if not data:
            raise GRPCError(Status.INVALID_ARGUMENT, f"request: no {self.name} message was sent")
        if len(data) < PREFIX_BYTES:
            raise unreadable(self.name, f"{len(data)} bytes, shorter than the 5-byte length prefix")
        flag, declared = struct.unpack(">BI", data[:PREFIX_BYTES])
        if flag & COMPRESSED_FLAG:
            raise unreadable(self.name, "compressed; no grpc-encoding is accepted")
        if flag != 0:
            raise unreadable(self.name, f"frame flag {flag:#04x}; a request carries message frames only")
        if declared > self.limit:
            raise oversized(self.name, declared, self.limit)
        body = data[PREFIX_BYTES:]
        if len(body) < declared:
            raise unreadable(self.name, f"the prefix announces {declared} bytes, the body has {len(body)}")
        if len(body) > declared:
            raise unreadable(self.name, "more than one message; unary and server-streaming calls take one")
        return body
