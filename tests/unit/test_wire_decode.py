"""`jobworkerp.wire_decode.decode` gives exactly betterproto2's message: for every generated message
class filled at random (the same filler as the encoder's test), for the field kinds it leaves to
betterproto2, and for bytes that are damaged — cut short, flipped, or not protobuf at all — where it
must give the library's own result or raise the library's own error."""

from __future__ import annotations

import random
from typing import Any

import pytest

from jobworkerp.wire_decode import decode
from tests.unit.test_wire import CLASSES, _Odd, fill


def _outcome(parse: Any, cls: type, data: bytes) -> tuple[str, Any]:
    try:
        return "ok", parse(cls, data)
    except Exception as e:
        return "error", (type(e), str(e))


def _library(cls: Any, data: bytes) -> Any:
    return cls.parse(data)


def _same(cls: type, data: bytes) -> None:
    ours, theirs = _outcome(decode, cls, data), _outcome(_library, cls, data)
    assert ours == theirs, (cls.__qualname__, data)
    if ours[0] == "ok":  # == ignores unknown fields: compare them and the bytes too
        assert ours[1]._unknown_fields == theirs[1]._unknown_fields
        assert _outcome(_encoded, cls, ours[1]) == _outcome(_encoded, cls, theirs[1])


def _encoded(cls: Any, message: Any) -> bytes:
    return bytes(message)  # raises for the odd messages betterproto2 makes of some damaged bytes


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_same_message_as_betterproto2(cls: type) -> None:
    rng = random.Random(cls.__qualname__)
    _same(cls, b"")
    for _ in range(60):
        _same(cls, bytes(fill(cls, rng)))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_damaged_bytes_get_betterproto2s_answer(cls: type) -> None:
    rng = random.Random("damaged " + cls.__qualname__)
    for _ in range(30):
        data = bytearray(bytes(fill(cls, rng)))
        if data:
            cut = rng.randrange(len(data))
            _same(cls, bytes(data[:cut]))
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            _same(cls, bytes(data))
        _same(cls, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))))


def test_fields_it_leaves_to_betterproto2() -> None:
    """Maps, wrapped types: the whole message goes through the library."""
    for message in (_Odd(), _Odd(counts={"a": 1, "b": -2}, note="n", ratios=[0.5, -1.0], zig=[-1, 2, -(2**63)])):
        _same(_Odd, bytes(message))


def test_packed_and_unpacked_repeated_scalars_and_unknown_fields() -> None:
    from jobworkerp.proto.jobworkerp import data

    output = data.ResultOutput(items=[b"a", b"", b"c"])
    _same(data.ResultOutput, bytes(output))
    unknown = bytes(data.JobId(value=5)) + b"\xf8\x07\x01" + b"\x82\x08\x02hi"  # fields 127 and 128
    decoded = decode(data.JobId, unknown)
    assert decoded.value == 5 and decoded._unknown_fields == b"\xf8\x07\x01\x82\x08\x02hi"
    _same(_Odd, b"\x1a\x10" + b"\x00" * 16 + b"\x19" + b"\x00" * 8)  # packed, then one unpacked double
    _same(_Odd, b"\x22\x03\x01\x02\x03" + b"\x20\x05")  # packed sint64, then one unpacked


def test_a_job_result_decodes_to_what_was_sent() -> None:
    from jobworkerp.proto.jobworkerp import data

    result = data.JobResult(id=data.JobResultId(value=9), data=data.JobResultData(
        job_id=data.JobId(value=2**62), worker_name="w", status=data.ResultStatus.FATAL_ERROR,
        output=data.ResultOutput(items=[b"out"]), enqueue_time=-5, store_failure=True))
    assert decode(data.JobResult, bytes(result)) == result
    assert decode(data.JobResult, memoryview(bytes(result))) == result


def test_the_codec_of_clients_and_servers_round_trips_both_kinds_of_message() -> None:
    """betterproto2 messages through wire/wire_decode; google.protobuf ones (health, reflection)
    through grpclib's own path."""
    from grpclib.health.v1 import health_pb2

    from jobworkerp.proto.jobworkerp import data
    from jobworkerp.wire_codec import MessageCodec

    codec = MessageCodec()
    rng = random.Random(11)
    for _ in range(20):
        result = fill(data.JobResult, rng)
        assert codec.decode(codec.encode(result, data.JobResult), data.JobResult) == result
    check = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
    assert codec.decode(codec.encode(check, health_pb2.HealthCheckResponse), health_pb2.HealthCheckResponse) == check
    with pytest.raises(TypeError):
        codec.encode(data.JobId(value=1), data.JobResult)
