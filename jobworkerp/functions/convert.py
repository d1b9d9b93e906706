"""Python values <-> the JSON form of a function's messages, following its hints (`schema.Node`).

Both ends of a function call convert through protobuf's standard JSON mapping (bytes as base64,
64-bit integers as strings, NaN as "NaN"), so the bytes on the wire come from
`json_format.ParseDict` / `MessageToDict` on whichever side: the runner host with the message
classes compiled from the derived proto text, the client through the codec that compiles the
runner's published proto (`jobworkerp.client.protocodec`). What this module adds is the typed
part: dataclass instances in and out, `bytes` instead of base64, ints instead of strings, and a
clear error naming the field when a value does not fit its hint.

Decoding expects `MessageToDict(..., always_print_fields_with_no_presence=True)`: then a missing
key means "not set", which gives the Python default (a parameter or field with one), None
(Optional), or an error for a required dataclass.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any

from jobworkerp.functions.schema import Field, ListOf, MapOf, Message, Node, Optional, Scalar

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ConversionError(ValueError):
    """A value that does not fit its hint (the message names the field)."""


# ---------------------------------------------------------------- Python -> JSON form


def encode_fields(fields: Sequence[Field], values: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """A message's JSON form from Python values by field name; a name not in `values` stays unset."""
    known = {f.name for f in fields}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConversionError(f"{where}{unknown[0]}: no such field (fields: {', '.join(sorted(known)) or 'none'})")
    out: dict[str, Any] = {}
    for f in fields:
        if f.name not in values:
            continue
        value = values[f.name]
        if value is None:
            if isinstance(f.node, Optional):
                continue
            raise ConversionError(f"{where}{f.name}: None given, but the hint is not Optional")
        out[f.name] = _encode(value, f.node, f"{where}{f.name}")
    return out


def encode_value(value: Any, node: Node, where: str) -> Any:
    """The JSON form of one value of hint `node` (a dataclass -> its message's object)."""
    return _encode(value, node, where)


def _encode(value: Any, node: Node, where: str) -> Any:
    if isinstance(node, Optional):
        return _encode(value, node.inner, where)
    if isinstance(node, Scalar):
        return _encode_scalar(value, node.py, where)
    if isinstance(node, Message):
        if isinstance(value, node.cls):
            values = {f.name: getattr(value, f.name) for f in node.fields}
        elif isinstance(value, Mapping):
            values = dict(value)
        else:
            raise ConversionError(f"{where}: expected a {node.cls.__qualname__}, got {type(value).__name__}")
        return encode_fields(node.fields, values, f"{where}.")
    if isinstance(node, ListOf):
        if not isinstance(value, (list, tuple)):
            raise ConversionError(f"{where}: expected a list, got {type(value).__name__}")
        return [_encode(item, node.item, f"{where}[{i}]") for i, item in enumerate(value)]
    if not isinstance(value, Mapping):
        raise ConversionError(f"{where}: expected a dict, got {type(value).__name__}")
    return {_encode_key(k, node.key.py, where): _encode(v, node.value, f"{where}[{k!r}]") for k, v in value.items()}


def _encode_scalar(value: Any, py: type, where: str) -> Any:
    if py is bool:
        if isinstance(value, bool):
            return value
    elif py is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not INT64_MIN <= value <= INT64_MAX:
                raise ConversionError(f"{where}: {value} does not fit in 64 bits")
            return value
    elif py is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
            if math.isnan(number):
                return "NaN"
            if math.isinf(number):
                return "Infinity" if number > 0 else "-Infinity"
            return number
    elif py is str:
        if isinstance(value, str):
            return value
    elif py is bytes and isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise ConversionError(f"{where}: expected {py.__name__}, got {type(value).__name__}")


def _encode_key(key: Any, py: type, where: str) -> str:
    if py is bool and isinstance(key, bool):
        return "true" if key else "false"
    if py is int and isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    if py is str and isinstance(key, str):
        return key
    raise ConversionError(f"{where}: key {key!r} is not a {py.__name__}")


# ---------------------------------------------------------------- JSON form -> Python


def decode_fields(fields: Sequence[Field], data: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Python values by field name from a message's JSON form; unset fields with a default are left out."""
    out: dict[str, Any] = {}
    for f in fields:
        if f.name in data:
            out[f.name] = _decode(data[f.name], f.node, f"{where}{f.name}")
        elif f.has_default:
            continue
        elif isinstance(f.node, Optional):
            out[f.name] = None
        elif isinstance(f.node, Message):
            raise ConversionError(f"{where}{f.name}: required, but not set")
        else:
            out[f.name] = _zero(f.node)
    return out


def _zero(node: Scalar | ListOf | MapOf) -> Any:
    """What proto3 means by an unset field without presence (MessageToDict prints these anyway)."""
    if isinstance(node, ListOf):
        return []
    if isinstance(node, MapOf):
        return {}
    return node.py()


def decode_value(value: Any, node: Node, where: str) -> Any:
    """One Python value of hint `node` from its JSON form (a message's object -> the dataclass)."""
    return _decode(value, node, where)


def _decode(value: Any, node: Node, where: str) -> Any:
    if isinstance(node, Optional):
        return _decode(value, node.inner, where)
    if isinstance(node, Scalar):
        try:
            if node.py is bytes:
                return base64.b64decode(value)
            return node.py(value)  # int64 arrives as a string, NaN/Infinity as strings
        except (TypeError, ValueError) as e:
            raise ConversionError(f"{where}: {value!r} is not a {node.py.__name__}: {e}") from None
    if isinstance(node, Message):
        if not isinstance(value, Mapping):
            raise ConversionError(f"{where}: expected an object for {node.cls.__qualname__}")
        return node.cls(**decode_fields(node.fields, value, f"{where}."))
    if isinstance(node, ListOf):
        return [_decode(item, node.item, f"{where}[{i}]") for i, item in enumerate(value)]
    return {_decode_key(k, node.key.py): _decode(v, node.value, f"{where}[{k!r}]") for k, v in value.items()}


def _decode_key(key: str, py: type) -> Any:
    if py is bool:
        return key == "true"
    return int(key) if py is int else key
