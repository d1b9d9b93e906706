"""Hypothesis strategies for hostile protobuf encodings, written at the wire level.

A message class (betterproto2 or google.protobuf) refuses to hold what a hostile client can send:
invalid UTF-8 in a string field, a varint longer than ten bytes, a number outside its field's
range, a declared field with the wrong wire type. So messages are encoded here by hand, field by
field, from each request type's descriptor: every request type is covered without naming one.

Values are hostile by default; `Pools` adds values that exist on the server (worker ids and
names, runner settings and job args it accepts), so a request can get past the first check and
reach deeper validation. `_overrides` keeps a few fields to values that are safe to run here.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

from jobworkerp.descriptors import descriptor_pool
from jobworkerp.front.decoding import message_name

VARINT, I64, LEN, I32 = 0, 1, 2, 5
U64 = 1 << 64
KB = 1024
MB = 1024 * KB
MAX_DEPTH = 3  # nested messages (Worker > WorkerData > RetryPolicy)

EDGE_INTS = (0, 1, -1, 2**31 - 1, 2**31, -(2**31), 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1, -(2**63), 2**63,
             U64 - 1)
# Past uint64: ten-byte varints that overflow, and varints far longer than any field allows.
OVERFLOW_INTS = st.one_of(st.just(U64), st.integers(U64, 2**70), st.integers(2**70, 2**200))
LONG_TEXTS = (b"n" * 129, b"c" * 33, b"k" * 64 * KB)  # past the MySQL columns (128, 32) and a 64 KB key
INVALID_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"a\x80b", b"\xf8\x88\x80\x80\x80")
SPECIAL_FLOATS = (math.nan, math.inf, -math.inf, 0.0, -0.0, 0.5, 1.0, 3.4e38, 1e-45)


def varint(value: int) -> bytes:
    """Protobuf varint of `value`; a negative one as its 64-bit two's complement, as proto does."""
    if value < 0:
        value %= U64
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def record(number: int, wire: int, payload: bytes) -> bytes:
    """One field on the wire: key, then the payload (length-prefixed for LEN)."""
    key = varint(number << 3 | wire)
    return key + (varint(len(payload)) + payload if wire == LEN else payload)


@dataclass(frozen=True)
class Pools:
    """Values that exist on the server under test, so requests reach past the first lookup."""

    ids: tuple[int, ...] = ()
    names: tuple[str, ...] = ()
    settings: tuple[bytes, ...] = ()  # runner_settings the runner accepts
    args: tuple[bytes, ...] = ()  # job args the runner accepts


Forced = dict[str, "st.SearchStrategy[bytes] | None"]


def _ints(pools: Pools, decodable: bool) -> st.SearchStrategy[int]:
    """Numbers for a varint field: edges, anything in 64 bits, ids that exist, and (unless the
    message must decode) values past 64 bits."""
    known = st.sampled_from(pools.ids) if pools.ids else st.nothing()
    plain = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-(2**63), U64 - 1), known)
    return plain if decodable else st.one_of(plain, OVERFLOW_INTS)


def _texts(pools: Pools, decodable: bool) -> st.SearchStrategy[bytes]:
    """What a string field carries on the wire: with NULs, long, an existing name, or (unless the
    message must decode) not UTF-8 at all."""
    known = st.sampled_from([n.encode() for n in pools.names]) if pools.names else st.nothing()
    texts = st.one_of(
        st.text(max_size=24).map(str.encode),
        known,
        st.builds(lambda a, b: f"{a}\x00{b}".encode(), st.text(max_size=4), st.text(max_size=4)),
        st.sampled_from(LONG_TEXTS),
    )
    return texts if decodable else st.one_of(texts, st.sampled_from(INVALID_UTF8))


def _blobs() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=48), st.sampled_from(LONG_TEXTS))


def _junk() -> st.SearchStrategy[bytes]:
    """Bytes no message parses: 0xff starts a key with the invalid wire type 7."""
    return st.binary(max_size=16).map(lambda b: b"\xff" + b)


def _floats(size: int) -> st.SearchStrategy[bytes]:
    fmt = "<f" if size == 4 else "<d"
    special = st.sampled_from(SPECIAL_FLOATS).map(lambda f: struct.pack(fmt, f))
    return st.one_of(special, st.binary(min_size=size, max_size=size))


def _overrides(pools: Pools, decodable: bool) -> dict[str, st.SearchStrategy[bytes]]:
    """Fields kept to values that are safe to run on this machine: no runner but COMMAND (no
    network, no Docker), only commands that cannot fail (so nothing retries in a loop), no
    periodic interval short enough to run during the test, no job timeout short enough to fail."""
    def ints(*values: int) -> st.SearchStrategy[bytes]:
        chosen = st.sampled_from(values)
        return (chosen if decodable else st.one_of(chosen, OVERFLOW_INTS)).map(varint)

    def blobs(accepted: tuple[bytes, ...]) -> st.SearchStrategy[bytes]:
        good = st.sampled_from(accepted) if accepted else st.nothing()
        return good if decodable else st.one_of(good, _junk())

    return {
        "jobworkerp.data.RunnerId.value": ints(1, 0, -1, 5, 999, 1024, 1025, 2**63 - 1, -(2**63)),
        "jobworkerp.data.WorkerData.runner_settings": st.one_of(blobs(pools.settings), st.just(b"")),
        "jobworkerp.data.WorkerData.periodic_interval": ints(0, 1, 1000, 86_400_000, 2**32 - 1, -1),
        "jobworkerp.service.JobRequest.args": blobs(pools.args),
        "jobworkerp.service.JobRequest.timeout": ints(0, 600_000, 2**63 - 1, 2**63, U64 - 1, -1),
    }


_VARINT_TYPES = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
                 FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
                 FieldDescriptor.TYPE_BOOL, FieldDescriptor.TYPE_ENUM}
_I32_TYPES = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_SFIXED32}
_I64_TYPES = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}


def wire_type(field: FieldDescriptor) -> int:
    if field.type in _VARINT_TYPES:
        return VARINT
    if field.type in _I32_TYPES:
        return I32
    if field.type in _I64_TYPES:
        return I64
    return LEN


class Encoder:
    """Strategies of hostile encodings of request messages. `decodable` ones keep to what the
    strict parser accepts (64-bit varints, UTF-8, the declared wire types), so their hostile values
    — unknown enums, negative and huge numbers, NULs, 64 KB strings — reach the server's validation."""

    def __init__(self, pools: Pools, *, decodable: bool = False) -> None:
        self.pools = pools
        self.decodable = decodable
        self._overrides = _overrides(pools, decodable)

    def value(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy[bytes]:
        """The payload of one occurrence of `field`, on its proper wire type."""
        override = self._overrides.get(field.full_name)
        wire = wire_type(field)
        if override is not None:
            return override
        if wire == VARINT:
            ints = _ints(self.pools, self.decodable)
            if field.enum_type is not None:
                ints = st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), ints)
            return ints.map(varint)
        if wire in (I32, I64):
            return _floats(4 if wire == I32 else 8)
        if field.type == FieldDescriptor.TYPE_STRING:
            return _texts(self.pools, self.decodable)
        if field.type == FieldDescriptor.TYPE_BYTES:
            return _blobs()
        if depth >= MAX_DEPTH:
            return st.just(b"")
        return self.message(field.message_type, depth + 1)

    def occurrence(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy[bytes]:
        """One field record; unless decodable, now and then with a wire type its field cannot have."""
        proper = wire_type(field)
        right = self.value(field, depth).map(lambda payload: record(field.number, proper, payload))
        if self.decodable:
            return right
        wrong = st.sampled_from([w for w in (VARINT, I64, LEN, I32) if w != proper])
        mistaken = st.tuples(wrong, st.binary(max_size=9)).map(
            lambda wb: record(field.number, wb[0], wb[1] if wb[0] == LEN else _fit(wb[0], wb[1])))
        return st.one_of(*([right] * 7), mistaken)

    def message(self, descriptor: Descriptor, depth: int = 0,
                force: Forced | None = None) -> st.SearchStrategy[bytes]:
        """Encodings of `descriptor`; the fields named in `force` are always sent with those
        payloads (None: never sent)."""
        return _message(self, descriptor, depth, force or {})

    def request(self, request_type: type, **force: st.SearchStrategy[bytes] | None) -> st.SearchStrategy[bytes]:
        return self.message(descriptor_of(request_type), force=force)


def _fit(wire: int, raw: bytes) -> bytes:
    """A payload of the size `wire` implies, so a mistaken record is well formed as a record."""
    if wire == VARINT:
        return varint(int.from_bytes(raw, "little"))
    size = 4 if wire == I32 else 8
    return raw.ljust(size, b"\0")[:size]


def _stray(descriptor: Descriptor, decodable: bool) -> st.SearchStrategy[bytes]:
    """A record the message does not declare: an unknown number (kept as an unknown field), or
    unless decodable, number 0 or a group wire type."""
    declared = set(descriptor.fields_by_number)
    unknown = st.integers(1, 2**29 - 1).filter(lambda n: n not in declared and not 19000 <= n <= 19999)
    kept = st.tuples(unknown, st.binary(max_size=8)).map(lambda nb: record(nb[0], LEN, nb[1]))
    if decodable:
        return kept
    return st.one_of(kept, st.binary(max_size=4).map(lambda b: record(0, LEN, b)),
                     st.sampled_from([3, 4]).map(lambda w: varint(1 << 3 | w)))


@st.composite
def _message(draw: Callable[..., bytes], encoder: Encoder, descriptor: Descriptor, depth: int,
             force: Forced) -> bytes:
    parts: list[bytes] = []
    for field in descriptor.fields:
        if field.name in force:
            forced = force[field.name]
            if forced is not None:
                parts.append(record(field.number, wire_type(field), draw(forced)))
            continue
        count = draw(st.integers(0, 3)) if field.is_repeated else int(draw(st.booleans()))
        parts.extend(draw(encoder.occurrence(field, depth)) for _ in range(count))
    if draw(st.sampled_from([False] * 9 + [True])):
        parts.append(draw(_stray(descriptor, encoder.decodable)))
    return b"".join(draw(st.permutations(parts))) if len(parts) > 1 else b"".join(parts)


def descriptor_of(request_type: type) -> Descriptor:
    """The descriptor of a request class: ours from the committed descriptor set, google's own."""
    own = getattr(request_type, "DESCRIPTOR", None)
    if isinstance(own, Descriptor):
        return own
    return descriptor_pool().FindMessageTypeByName(message_name(request_type))
