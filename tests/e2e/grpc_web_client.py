"""A grpc-web client built on httpx, written from the grpc-web protocol rather than from the
server's code (jobworkerp/front/grpc_web_wire.py), so the two cannot share a mistake: requests are
framed by hand, text-mode answers decoded four base64 characters at a time, as a browser client
does with a stream that arrives in pieces."""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from urllib.parse import unquote

import httpx

BINARY = "application/grpc-web+proto"
TEXT = "application/grpc-web-text"
HANG_GUARD_S = 60.0  # only to fail instead of hanging


def frame(message: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, len(message)) + message


@dataclass
class WebAnswer:
    http_status: int
    headers: httpx.Headers
    messages: list[bytes] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def grpc_status(self) -> int:
        return int(self.trailers["grpc-status"])

    @property
    def grpc_message(self) -> str:
        return unquote(self.trailers.get("grpc-message", ""))


def _decode_text(body: bytes) -> bytes:
    assert len(body) % 4 == 0, f"a grpc-web-text body is whole base64 quads, got {len(body)} bytes"
    return b"".join(base64.b64decode(body[i:i + 4], validate=True) for i in range(0, len(body), 4))


def parse(response: httpx.Response) -> WebAnswer:
    answer = WebAnswer(response.status_code, response.headers)
    body = response.content
    if response.headers.get("content-type", "").startswith("application/grpc-web-text"):
        body = _decode_text(body)
    at = 0
    while at < len(body):
        flag, length = struct.unpack(">BI", body[at:at + 5])
        payload = body[at + 5:at + 5 + length]
        assert len(payload) == length, "a frame shorter than its prefix"
        at += 5 + length
        if flag & 0x80:
            assert at == len(body), "the trailer frame must be the last"
            for line in payload.decode("ascii").split("\r\n"):
                if line:
                    name, _, value = line.partition(":")
                    answer.trailers[name.strip().lower()] = value.strip()
        else:
            assert not answer.trailers, "a message after the trailers"
            answer.messages.append(payload)
    return answer


def call(client: httpx.Client, port: int, method: str, message: bytes, *, text: bool = False,
         headers: dict[str, str] | None = None, body: bytes | None = None, scheme: str = "http") -> WebAnswer:
    """POST one grpc-web call of `method` ("package.Service/Method"); `body` replaces the framed
    `message` as sent (before base64 in text mode) to send something that is not one."""
    raw = frame(message) if body is None else body
    content = base64.b64encode(raw) if text else raw
    response = client.post(f"{scheme}://127.0.0.1:{port}/{method}", content=content, timeout=HANG_GUARD_S,
                           headers={"content-type": TEXT if text else BINARY, "x-grpc-web": "1",
                                    **(headers or {})})
    return parse(response)
