"""`jobworkerp.wire.encode` gives exactly betterproto2's bytes: for every generated message class,
filled at random (scalars at their edges, optional fields at their default value, nested
messages, repeated and packed fields, unknown fields), and for the field kinds the generated
code does not use (maps, wrapped types), which go through betterproto2's own code."""

from __future__ import annotations

import dataclasses
import inspect
import random
import sys
import typing
from dataclasses import dataclass
from typing import Any

import betterproto2
import pytest

import jobworkerp.proto.jobworkerp.data
import jobworkerp.proto.jobworkerp.ext
import jobworkerp.proto.jobworkerp.runner
import jobworkerp.proto.jobworkerp.service
from jobworkerp.front.decoding import RequestCodec
from jobworkerp.wire import encode

MODULES = [jobworkerp.proto.jobworkerp.data, jobworkerp.proto.jobworkerp.ext, jobworkerp.proto.jobworkerp.runner,
           jobworkerp.proto.jobworkerp.service]
CLASSES: list[Any] = sorted({cls for module in MODULES for _, cls in inspect.getmembers(module, inspect.isclass)
                  if issubclass(cls, betterproto2.Message) and cls is not betterproto2.Message},
                 key=lambda c: f"{c.__module__}.{c.__qualname__}")

_INT_EDGES = {
    betterproto2.TYPE_INT32: [0, 1, -1, 127, 128, 2**31 - 1, -(2**31)],
    betterproto2.TYPE_INT64: [0, 1, -1, 300, 2**63 - 1, -(2**63)],
    betterproto2.TYPE_UINT32: [0, 1, 127, 128, 16384, 2**32 - 1],
    betterproto2.TYPE_UINT64: [0, 1, 2**64 - 1, 2**35],
    betterproto2.TYPE_SINT32: [0, 1, -1, 2**31 - 1, -(2**31)],
    betterproto2.TYPE_SINT64: [0, -1, 2**63 - 1, -(2**63)],
    betterproto2.TYPE_FIXED32: [0, 1, 2**32 - 1],
    betterproto2.TYPE_SFIXED32: [0, -1, -(2**31)],
    betterproto2.TYPE_FIXED64: [0, 2**64 - 1],
    betterproto2.TYPE_SFIXED64: [0, -1, -(2**63)],
}


def _field_class(cls: type, name: str) -> Any:
    hint = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _scalar(rng: random.Random, proto_type: str, field_cls: Any) -> Any:
    if proto_type in _INT_EDGES:
        return rng.choice(_INT_EDGES[proto_type] + [rng.randrange(0, 2**20)])
    if proto_type == betterproto2.TYPE_BOOL:
        return rng.random() < 0.5
    if proto_type in (betterproto2.TYPE_FLOAT, betterproto2.TYPE_DOUBLE):
        return rng.choice([0.0, -0.0, 1.5, -2.25, 1e30])
    if proto_type == betterproto2.TYPE_STRING:
        return rng.choice(["", "a", "héllo ✓", "x" * 200])
    if proto_type == betterproto2.TYPE_BYTES:
        return rng.choice([b"", b"\x00", bytes(range(256)), b"y" * 300])
    if proto_type == betterproto2.TYPE_ENUM:
        return rng.choice(list(field_cls))
    raise AssertionError(proto_type)


def fill(cls: type, rng: random.Random, depth: int = 0) -> Any:
    kwargs: dict[str, Any] = {}
    chosen_oneof: dict[str, str] = {}
    for group, fields in cls._betterproto.oneof_field_by_group.items():  # type: ignore[attr-defined]
        chosen_oneof[group] = rng.choice(sorted(f.name for f in fields))
    for name, meta in cls._betterproto.meta_by_field_name.items():  # type: ignore[attr-defined]
        if meta.group and chosen_oneof[meta.group] != name:
            continue
        if rng.random() < 0.2:
            continue  # left at its default
        field_cls = _field_class(cls, name)
        if meta.map_meta:  # a map<K, V> field (ChannelInfo.host_restarts)
            key_meta, value_meta = meta.map_meta
            hint = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))[name]
            key_cls, value_cls = typing.get_args(hint)
            kwargs[name] = {_scalar(rng, key_meta.proto_type, key_cls): _value(rng, value_meta.proto_type, value_cls,
                                                                                depth)
                            for _ in range(rng.randrange(0, 4))}
        elif meta.repeated:
            item_cls = typing.get_args(field_cls)[0] if typing.get_args(field_cls) else field_cls
            kwargs[name] = [_value(rng, meta.proto_type, item_cls, depth) for _ in range(rng.randrange(0, 4))]
        else:
            kwargs[name] = _value(rng, meta.proto_type, field_cls, depth)
    message = cls(**kwargs)
    if rng.random() < 0.1:
        message._unknown_fields = b"\xf8\x07\x01"  # field 127, varint 1
    return message


def _value(rng: random.Random, proto_type: str, field_cls: Any, depth: int) -> Any:
    if proto_type == betterproto2.TYPE_MESSAGE:
        return fill(field_cls, rng, depth + 1) if depth < 4 else field_cls()
    return _scalar(rng, proto_type, field_cls)


def test_the_generated_classes_are_found() -> None:
    names = {c.__name__ for c in CLASSES}
    assert {"JobResult", "JobResultData", "CreateJobResponse", "WorkerData", "JobRequest"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_same_bytes_as_betterproto2(cls: type) -> None:
    rng = random.Random(cls.__qualname__)
    assert encode(cls()) == bytes(cls())
    for _ in range(60):
        message = fill(cls, rng)
        assert encode(message) == bytes(message), message


def test_optional_fields_set_to_their_zero_value_are_sent() -> None:
    from jobworkerp.proto.jobworkerp import data

    job = data.JobData(uniq_key="", grabbed_until_time=0, worker_id=data.WorkerId(value=0))
    assert encode(job) == bytes(job) == b"\x0a\x00\x1a\x00\x28\x00"


@dataclass(eq=False, repr=False)
class _StringValue(betterproto2.Message):
    """A wrapper type as betterproto2 unwraps them (google.protobuf.StringValue's shape)."""

    value: str = betterproto2.field(1, betterproto2.TYPE_STRING)

    @classmethod
    def from_wrapped(cls, wrapped: str) -> _StringValue:
        return cls(value=wrapped)


@dataclass(eq=False, repr=False)
class _Odd(betterproto2.Message):
    """Field kinds the generated code does not use: a map, a wrapped type, packed fixed floats."""

    counts: dict[str, int] = betterproto2.field(1, betterproto2.TYPE_MAP, map_meta=betterproto2.map_meta(
        betterproto2.TYPE_STRING, betterproto2.TYPE_INT64))
    note: str | None = betterproto2.field(2, betterproto2.TYPE_MESSAGE, optional=True,
                                          unwrap=lambda: _StringValue)
    ratios: list[float] = betterproto2.field(3, betterproto2.TYPE_DOUBLE, repeated=True)
    zig: list[int] = betterproto2.field(4, betterproto2.TYPE_SINT64, repeated=True)


def test_maps_wrapped_types_and_packed_fields() -> None:
    for message in (_Odd(), _Odd(counts={"a": 1, "b": -2}, note="n", ratios=[0.5, -1.0], zig=[-1, 2, -(2**63)]),
                    _Odd(note="", ratios=[], zig=[0])):
        assert encode(message) == bytes(message)


def test_values_it_cannot_encode_get_betterproto2s_own_answer() -> None:
    from jobworkerp.proto.jobworkerp import data

    with pytest.raises(ValueError, match="Negative value"):  # betterproto2's message, not ours
        encode(data.JobData(enqueue_time=-(2**64)))
    wrong = data.JobData(args="text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode(wrong)
    with pytest.raises(TypeError):
        bytes(wrong)


def test_the_server_codec_encodes_with_it() -> None:
    from jobworkerp.proto.jobworkerp import data

    rng = random.Random(7)
    codec = RequestCodec()
    for _ in range(20):
        message = fill(data.JobResult, rng)
        assert codec.encode(message, data.JobResult) == bytes(message)
    with pytest.raises(TypeError):
        codec.encode(data.JobId(value=1), data.JobResult)


def test_dataclass_fields_match_the_metadata() -> None:
    """The encoder walks `meta_by_field_name`; it is the dataclass's own field list."""
    for cls in CLASSES:
        assert list(cls._betterproto.meta_by_field_name) == [  # type: ignore[attr-defined]
            f.name for f in dataclasses.fields(cls) if "betterproto" in f.metadata]
