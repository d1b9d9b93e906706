"""`decode(cls, data)`: the same message as betterproto2's `cls.parse(data)`, several times faster.

Why: parsing is on every job's path more than once — the request of each RPC, a Scalable front
parsing every DIRECT result it relays, a worker parsing each ticket it pops. betterproto2 reads
each byte of a varint through its own `BytesIO.read(1)` and wraps every field in a frozen
dataclass before looking at it: 90 µs for one JobResult, most of a front's decoding time.

This decoder walks the bytes in place with the same rules as `Message.load` — each known field
converted by its wire type as betterproto2 does, repeated fields appended (packed or not),
unknown fields kept in `_unknown_fields` in order — and builds the message through its own
constructor, so defaults and `__post_init__` are the library's.

Anything it does not handle itself falls back to `cls.parse(data)` for the whole message: a class
with a map or wrapped-type field, a pydantic class, a field whose wire type does not match its
declaration, truncated or malformed bytes, or a value the library would convert differently. So
odd input gives betterproto2's own result or its own error, whichever it is.
tests/unit/test_wire_decode.py compares both on every generated message class and on damaged
bytes. A leaf: imports only betterproto2 and `jobworkerp.wire`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, TypeVar, cast

import betterproto2

from jobworkerp.wire import memoized_plan, plain_message_class

M = TypeVar("M", bound=betterproto2.Message)

_SIGNED = {betterproto2.TYPE_INT32: 32, betterproto2.TYPE_INT64: 64, betterproto2.TYPE_ENUM: 64}
_UNSIGNED = {betterproto2.TYPE_UINT32: (1 << 32) - 1, betterproto2.TYPE_UINT64: (1 << 64) - 1}
_ZIGZAG = {betterproto2.TYPE_SINT32: (1 << 32) - 1, betterproto2.TYPE_SINT64: (1 << 64) - 1}
_FIXED = {t: struct.Struct(betterproto2._pack_fmt(t)) for t in betterproto2.FIXED_TYPES}
_PACKED = frozenset(betterproto2.PACKED_TYPES)

# field number -> (field name, proto type, repeated, extra, varint converter): extra is the message
# class of a message field, the enum class of an enum field, the Struct of a fixed-width one; the
# converter turns a varint's raw value into the field's value (None: not a varint type).
_Plan = dict[int, tuple[str, str, bool, Any, "Callable[[int], Any] | None"]]
_plans: dict[type, _Plan | None] = {}


class _Fallback(Exception):
    """Something this decoder leaves to betterproto2."""


def _converter(proto_type: str, extra: Any) -> Callable[[int], Any] | None:
    """How a varint becomes the value betterproto2 gives a field of this type, chosen once per
    field rather than looked up per value."""
    bits = _SIGNED.get(proto_type)
    if bits is not None:
        mask, sign = (1 << bits) - 1, 1 << (bits - 1)
        if proto_type != betterproto2.TYPE_ENUM:
            return lambda value: ((value & mask) ^ sign) - sign
        members = {int(member): member for member in extra}  # known values, without the enum's call

        def enum_value(value: int) -> Any:
            value = ((value & mask) ^ sign) - sign
            member = members.get(value)
            return extra(value) if member is None else member

        return enum_value
    unsigned = _UNSIGNED.get(proto_type)
    if unsigned is not None:
        return lambda value: value & unsigned
    zigzag = _ZIGZAG.get(proto_type)
    if zigzag is not None:
        return lambda value: ((value & zigzag) >> 1) ^ (-(value & 1))
    if proto_type == betterproto2.TYPE_BOOL:
        return lambda value: value > 0
    return None  # betterproto2 would keep the raw int in a field declared otherwise: left to it


def _plan(cls: type) -> _Plan | None:
    if not plain_message_class(cls):
        return None
    meta: Any = cast(Any, cls)._betterproto
    plan: _Plan = {}
    for name, field in meta.meta_by_field_name.items():
        if field.map_meta or field.unwrap is not None or field.proto_type == betterproto2.TYPE_MAP:
            return None
        extra: Any = None
        if field.proto_type in (betterproto2.TYPE_MESSAGE, betterproto2.TYPE_ENUM):
            extra = meta.cls_by_field[name]
        elif field.proto_type in _FIXED:
            extra = _FIXED[field.proto_type]
        plan[field.number] = (name, field.proto_type, bool(field.repeated), extra,
                              _converter(field.proto_type, extra))
    return plan


def _plan_of(cls: type) -> _Plan:
    plan = memoized_plan(_plans, cls, _plan)
    if plan is None:
        raise _Fallback
    return plan


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos >= end:
        raise _Fallback
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    result = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        if pos >= end or shift >= 64:
            raise _Fallback
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _packed(proto_type: str, extra: Any, convert: Callable[[int], Any] | None, buf: bytes, pos: int,
            end: int) -> list[Any]:
    items: list[Any] = []
    if extra is not None and proto_type in _FIXED:
        size = extra.size
        if (end - pos) % size:
            raise _Fallback
        for at in range(pos, end, size):
            items.append(extra.unpack_from(buf, at)[0])
        return items
    if convert is None:
        raise _Fallback
    while pos < end:
        value, pos = _varint(buf, pos, end)
        items.append(convert(value))
    return items


def _decode(cls: type[M], buf: bytes, pos: int, end: int) -> M:
    # Varints of one byte (most keys, small values and lengths) are read inline: a call per
    # varint was a third of the decoding time.
    plan = _plan_of(cls)
    message = cls()
    unknown = b""
    while pos < end:
        start = pos
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(buf, pos, end)
        wire_type = key & 7
        raw = 0
        if wire_type == 0 or wire_type == 2:
            if pos >= end:
                raise _Fallback
            raw = buf[pos]
            if raw < 0x80:
                pos += 1
            else:
                raw, pos = _varint(buf, pos, end)
            stop = pos if wire_type == 0 else pos + raw
        elif wire_type == 1 or wire_type == 5:
            stop = pos + (8 if wire_type == 1 else 4)
        else:
            raise _Fallback  # groups, or not protobuf at all
        if stop > end:
            raise _Fallback
        entry = plan.get(key >> 3)
        if entry is None:
            unknown += buf[start:stop]
            pos = stop
            continue
        name, proto_type, repeated, extra, convert = entry
        value: Any
        if wire_type == 0:
            if convert is None:
                raise _Fallback
            value = convert(raw)
        elif wire_type == 2:
            if proto_type == betterproto2.TYPE_MESSAGE:
                value = _decode(extra, buf, pos, stop)
            elif proto_type == betterproto2.TYPE_BYTES:
                value = buf[pos:stop]
            elif proto_type == betterproto2.TYPE_STRING:
                value = str(buf[pos:stop], "utf-8")
            elif proto_type in _PACKED and repeated:
                getattr(message, name).extend(_packed(proto_type, extra, convert, buf, pos, stop))
                pos = stop
                continue
            else:
                raise _Fallback
        else:
            if proto_type not in _FIXED or extra.size != stop - pos:
                raise _Fallback
            value = extra.unpack_from(buf, pos)[0]
        pos = stop
        if repeated:
            getattr(message, name).append(value)
        else:
            setattr(message, name, value)
    if unknown:
        message._unknown_fields = unknown
    return message


def message_field(data: bytes, number: int) -> bytes | None:
    """The bytes of the embedded message in field `number` of the encoded message `data`, found
    without decoding anything else; None when the field is absent or appears more than once (the
    parts would have to be merged) or the bytes are malformed. For reading one field of a
    message that is otherwise passed on as it came (storage/redis_bus.py, a DIRECT reply)."""
    end = len(data)
    pos = 0
    found: tuple[int, int] | None = None
    try:
        while pos < end:
            key, pos = _varint(data, pos, end)
            wire_type = key & 7
            if wire_type == 0:
                _, pos = _varint(data, pos, end)
            elif wire_type == 1:
                pos += 8
            elif wire_type == 5:
                pos += 4
            elif wire_type == 2:
                size, pos = _varint(data, pos, end)
                if key >> 3 == number:
                    if found is not None:
                        return None
                    found = (pos, pos + size)
                pos += size
            else:  # groups: not in this project's messages
                return None
    except _Fallback:
        return None
    if pos != end or found is None:
        return None
    return data[found[0]:found[1]]


def decode(cls: type[M], data: bytes | bytearray | memoryview) -> M:
    """`cls.parse(data)`, faster; falls back to it for anything unusual (see the module doc)."""
    buf = bytes(data)
    try:
        return _decode(cls, buf, 0, len(buf))
    except Exception:
        return cls.parse(buf)
