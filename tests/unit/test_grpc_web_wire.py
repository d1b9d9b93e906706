"""The grpc-web wire format (front/grpc_web_wire.py) and CORS policy (front/grpc_web_cors.py),
without a server: what a request body may be, and what a browser is told."""

from __future__ import annotations

import base64
import struct

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobworkerp.front.grpc_web_cors import CorsPolicy
from jobworkerp.front.grpc_web_wire import (
    Mode,
    RequestBody,
    content_mode,
    decode_text,
    encode_body,
    message_frame,
    trailer_frame,
)

pytestmark = pytest.mark.timeout(10)
NAME = "jobworkerp.service.JobRequest"


@pytest.mark.parametrize(("content_type", "mode"), [
    ("application/grpc-web", Mode.BINARY), ("application/grpc-web+proto", Mode.BINARY),
    ("Application/GRPC-Web+proto; charset=utf-8", Mode.BINARY), ("application/grpc-web-text", Mode.TEXT),
    ("application/grpc-web-text+proto", Mode.TEXT), ("application/grpc-web+json", None), ("application/grpc", None),
    ("text/plain", None), (None, None),
])
def test_content_modes(content_type: str | None, mode: Mode | None) -> None:
    assert content_mode(content_type) is mode


def test_trailer_frame_percent_encodes_the_message() -> None:
    frame = trailer_frame(Status.INVALID_ARGUMENT, "worker_name: is required\r\nand 100% wrong")
    assert frame[0] == 0x80 and struct.unpack(">I", frame[1:5])[0] == len(frame) - 5
    block = frame[5:].decode("ascii")
    assert block == "grpc-status:3\r\ngrpc-message:worker_name: is required%0D%0Aand 100%25 wrong\r\n"
    assert trailer_frame(Status.OK, None)[5:] == b"grpc-status:0\r\n"


def test_text_mode_decodes_padded_segments_one_after_another() -> None:
    parts = [b"a", b"bc", b"def", b"\x00\xff"]
    assert decode_text(b"".join(base64.b64encode(p) for p in parts)) == b"".join(parts)
    assert encode_body(Mode.TEXT, b"abc") == b"YWJj" and encode_body(Mode.BINARY, b"abc") == b"abc"
    with pytest.raises(ValueError, match="not base64"):
        decode_text(b"!!!!")


def body_of(mode: Mode, data: bytes, limit: int = 100, pieces: int = 1) -> RequestBody:
    body = RequestBody(mode, NAME, limit)
    raw = base64.b64encode(data) if mode is Mode.TEXT else data
    step = max(1, -(-len(raw) // pieces))
    for at in range(0, len(raw), step):
        body.feed(raw[at:at + step])
    return body


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("pieces", [1, 3, 50])
def test_one_message_is_read_in_any_pieces(mode: Mode, pieces: int) -> None:
    assert body_of(mode, message_frame(b"x" * 40), pieces=pieces).message() == b"x" * 40


@pytest.mark.parametrize(("data", "names"), [
    (b"", "no jobworkerp.service.JobRequest message was sent"),
    (b"\x00\x00", "shorter than the 5-byte length prefix"),
    (b"\x00\x00\x00\x00\x09abc", "announces 9 bytes, the body has 3"),
    (message_frame(b"a") + message_frame(b"b"), "more than one message"),
    (b"\x01\x00\x00\x00\x01a", "compressed"),
    (b"\x80\x00\x00\x00\x01a", "frame flag 0x80"),
])
def test_a_body_that_is_not_one_message_is_invalid_argument(data: bytes, names: str) -> None:
    with pytest.raises(GRPCError) as info:
        body_of(Mode.BINARY, data).message()
    assert info.value.status is Status.INVALID_ARGUMENT
    assert names in (info.value.message or "")


@pytest.mark.parametrize("mode", list(Mode))
def test_a_message_over_the_limit_is_refused_from_its_prefix(mode: Mode) -> None:
    body = RequestBody(mode, NAME, 100)
    prefix = struct.pack(">BI", 0, 101) + b"x"  # 6 bytes: 8 base64 characters
    with pytest.raises(GRPCError) as info:
        body.feed(base64.b64encode(prefix) if mode is Mode.TEXT else prefix)
    assert info.value.status is Status.RESOURCE_EXHAUSTED
    assert f"{NAME} message is 101 bytes" in (info.value.message or "")
    assert "GRPC_MAX_MESSAGE_BYTES" in (info.value.message or "")


def test_a_body_past_one_message_is_refused_even_without_a_prefix_check() -> None:
    body = RequestBody(Mode.TEXT, NAME, 100)
    with pytest.raises(GRPCError) as info:
        body.feed(b"!!!!!!!!" + b"A" * body.cap)  # not base64: the prefix cannot be read
    assert info.value.status is Status.RESOURCE_EXHAUSTED


def test_cors_answers_listed_origins_only() -> None:
    policy = CorsPolicy(("https://dash.example.com",), "jobworkerp-auth")
    assert policy.allows(None) and policy.allows("https://dash.example.com") and policy.allows("HTTPS://Dash.example.com")
    assert not policy.allows("https://evil.example") and not policy.allows("null")
    assert CorsPolicy((), "k").allows(None) and not CorsPolicy((), "k").allows("https://dash.example.com")
    anyone = CorsPolicy(("*",), "k")
    assert anyone.allows("https://evil.example") and not anyone.allows("https://é.example")
    headers = dict(policy.preflight_headers("https://dash.example.com", None))
    assert headers["access-control-allow-origin"] == "https://dash.example.com"
    assert "jobworkerp-auth" in headers["access-control-allow-headers"]
    assert "grpc-status" in headers["access-control-expose-headers"]
    asked = dict(policy.preflight_headers("https://dash.example.com", "x-grpc-web, jobworkerp-auth"))
    assert asked["access-control-allow-headers"] == "x-grpc-web, jobworkerp-auth"
    odd = dict(policy.preflight_headers("https://dash.example.com", "x\r\ny: 1"))
    assert "jobworkerp-auth" in odd["access-control-allow-headers"]  # not echoed: the default list
