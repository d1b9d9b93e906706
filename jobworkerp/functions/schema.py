"""A decorated function's type hints -> the runner's args and result messages, as proto3 text.

The server learns a runner's messages from proto text (RunnerService publishes it, the CLI and
the client encode JSON through it, the server checks job args against it), so a function gets
the same: its parameters become the fields of `<Name>Args` (numbered in order), its return
annotation the result message. Mapping:

    str -> string   int -> int64   float -> double   bool -> bool   bytes -> bytes
    list[T] -> repeated T          dict[K, V] -> map<K, V> (K: str, int or bool)
    a dataclass -> a message of its fields     T | None (Optional[T]) -> `optional T` (scalars)

A parameter (or dataclass field) with a default is `optional` too, so "not given" stays
distinguishable from a zero value and the Python default applies. A return that is not a
dataclass is wrapped in `<Name>Result { T result = 1; }`; `-> None` has no result message (no
output). Anything else (a union, Any, a nested list, an Optional list, *args, a missing hint) is
refused with a `SchemaError` naming the function and the parameter, which discovery reports
instead of serving the function.

The type tree built here (`Node`) is also what `convert.py` walks to turn Python values into the
messages' JSON form and back, so both directions follow the same hints.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import keyword
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobworkerp.functions.decorator import function_info

SCALARS: dict[type, str] = {str: "string", int: "int64", float: "double", bool: "bool", bytes: "bytes"}
MAP_KEYS = (str, int, bool)


class SchemaError(ValueError):
    """A hint with no protobuf form; the message names the function and the parameter."""


@dataclass(frozen=True)
class Scalar:
    py: type


@dataclass(eq=False)
class Message:
    """A dataclass as a message; `fields` is filled after creation (dataclasses may refer to themselves)."""

    cls: type
    proto_name: str
    fields: list[Field] = field(default_factory=list)


@dataclass(frozen=True)
class ListOf:
    item: Scalar | Message


@dataclass(frozen=True)
class MapOf:
    key: Scalar
    value: Scalar | Message


@dataclass(frozen=True)
class Optional:
    inner: Scalar | Message


Node = Scalar | Message | ListOf | MapOf | Optional


@dataclass(frozen=True)
class Field:
    """One message field: a parameter, a dataclass field, or the wrapped `result`."""

    name: str
    node: Node
    number: int
    has_default: bool  # absent on the wire -> the Python default applies


@dataclass(frozen=True)
class FunctionSchema:
    """What the runner of a decorated function publishes and how its values convert."""

    runner_name: str
    params: tuple[Field, ...]
    result: Field | Message | None  # the wrapped `result` field, the returned dataclass, or None
    args_proto: str
    result_proto: str | None


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", name) if part) or "Function"


def _package(name: str) -> str:
    safe = re.sub(r"\W", "_", name, flags=re.ASCII).lower() or "function"
    if safe[0].isdigit() or keyword.iskeyword(safe):
        safe = "f_" + safe
    return f"jobworkerp.functions.{safe}"


class _Builder:
    """Walks hints into Nodes for one function, naming each dataclass's message once."""

    def __init__(self, fn_name: str) -> None:
        self.fn_name = fn_name
        self.messages: dict[type, Message] = {}
        self.taken: set[str] = set()

    def name(self, wanted: str) -> str:
        candidate, n = wanted, 1
        while candidate in self.taken:
            n += 1
            candidate = f"{wanted}{n}"
        self.taken.add(candidate)
        return candidate

    def fail(self, where: str, why: str) -> SchemaError:
        return SchemaError(f"function {self.fn_name}: {where}: {why}")

    def node(self, hint: Any, where: str) -> Node:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            rest = [a for a in args if a is not type(None)]
            if len(rest) != 1 or len(args) != 2:
                raise self.fail(where, f"{_show(hint)} is a union; only `T | None` (Optional[T]) is supported")
            inner = self.node(rest[0], where)
            if isinstance(inner, (ListOf, MapOf)):
                raise self.fail(where, f"{_show(hint)}: None cannot be told from an empty "
                                       f"{'list' if isinstance(inner, ListOf) else 'dict'} on the wire; "
                                       "drop the `| None` (empty means none)")
            assert not isinstance(inner, Optional)
            return Optional(inner)
        if origin is list:  # list[T] and typing.List[T] alike
            if len(args) != 1:
                raise self.fail(where, f"{_show(hint)}: give the item type, e.g. list[str]")
            item = self.node(args[0], f"{where} (list item)")
            if not isinstance(item, (Scalar, Message)):
                raise self.fail(where, f"{_show(hint)}: list items must be scalars or dataclasses")
            return ListOf(item)
        if origin is dict:
            if len(args) != 2:
                raise self.fail(where, f"{_show(hint)}: give key and value types, e.g. dict[str, int]")
            if args[0] not in MAP_KEYS:
                raise self.fail(where, f"{_show(hint)}: dict keys must be str, int or bool")
            value = self.node(args[1], f"{where} (dict value)")
            if not isinstance(value, (Scalar, Message)):
                raise self.fail(where, f"{_show(hint)}: dict values must be scalars or dataclasses")
            return MapOf(Scalar(args[0]), value)
        if hint in SCALARS:
            return Scalar(hint)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self.message(hint, where)
        if hint in (list, dict):
            raise self.fail(where, f"{_show(hint)}: give the item types, e.g. list[str] or dict[str, int]")
        raise self.fail(where, f"unsupported type {_show(hint)} (supported: str, int, float, bool, bytes, "
                               "list[T], dict[K, V], dataclasses, T | None)")

    def message(self, cls: type, where: str) -> Message:
        known = self.messages.get(cls)
        if known is not None:
            return known
        message = Message(cls, self.name(cls.__name__))
        self.messages[cls] = message
        try:
            hints = typing.get_type_hints(cls)
        except Exception as e:  # a name the annotation refers to cannot be found
            raise self.fail(where, f"cannot resolve the hints of dataclass {cls.__qualname__}: {e}") from None
        for number, f in enumerate((f for f in dataclasses.fields(cls) if f.init), start=1):
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            node = self.node(hints[f.name], f"{where} ({cls.__qualname__}.{f.name})")
            message.fields.append(Field(f.name, node, number, has_default))
        return message


def _show(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) and not typing.get_args(hint) else repr(hint).replace("typing.", "")


def _type(node: Scalar | Message) -> str:
    return SCALARS[node.py] if isinstance(node, Scalar) else node.proto_name


def _field_line(f: Field) -> str:
    node = f.node
    if isinstance(node, ListOf):
        return f"repeated {_type(node.item)} {f.name} = {f.number};"
    if isinstance(node, MapOf):
        return f"map<{SCALARS[node.key.py]}, {_type(node.value)}> {f.name} = {f.number};"
    if isinstance(node, Optional):
        label = "optional " if isinstance(node.inner, Scalar) else ""
        return f"{label}{_type(node.inner)} {f.name} = {f.number};"
    label = "optional " if isinstance(node, Scalar) and f.has_default else ""
    return f"{label}{_type(node)} {f.name} = {f.number};"


def _messages_of(fields: list[Field], seen: dict[str, Message]) -> None:
    """Every message reachable from `fields`, in first-use order (each once)."""
    for f in fields:
        node = f.node
        inner = node.inner if isinstance(node, Optional) else node.item if isinstance(node, ListOf) else \
            node.value if isinstance(node, MapOf) else node
        if isinstance(inner, Message) and inner.proto_name not in seen:
            seen[inner.proto_name] = inner
            _messages_of(inner.fields, seen)


def _proto_text(package: str, name: str, fields: list[Field]) -> str:
    """A proto3 file whose first message is `name` with `fields`, then the messages they use."""
    seen: dict[str, Message] = {}
    _messages_of(fields, seen)
    seen.pop(name, None)  # a returned dataclass is the first message itself
    blocks = [_message_block(name, fields)] + [_message_block(m.proto_name, m.fields) for m in seen.values()]
    return f'syntax = "proto3";\npackage {package};\n\n' + "\n\n".join(blocks) + "\n"


def _message_block(name: str, fields: list[Field]) -> str:
    lines = "".join(f"  {_field_line(f)}\n" for f in fields)
    return f"message {name} {{\n{lines}}}"


@functools.cache
def derive_schema(fn: Callable[..., Any]) -> FunctionSchema:
    """The schema of a decorated function (cached per function); raises SchemaError."""
    info = function_info(fn)
    if info is None:
        raise SchemaError(f"{fn!r} is not decorated with @jobworkerp.function")
    qualname = getattr(fn, "__qualname__", repr(fn))
    builder = _Builder(qualname)
    try:
        hints = typing.get_type_hints(fn)
    except Exception as e:
        raise SchemaError(f"function {qualname}: cannot resolve its type hints: {e}") from None
    pascal = _pascal(info.name)
    args_name = builder.name(f"{pascal}Args")
    params: list[Field] = []
    for number, p in enumerate(inspect.signature(fn).parameters.values(), start=1):
        where = f"parameter {p.name}"
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise builder.fail(where, "*args and **kwargs have no fixed fields; name each parameter")
        if p.kind is p.POSITIONAL_ONLY:
            raise builder.fail(where, "positional-only parameters cannot be passed by name")
        if p.name not in hints:
            raise builder.fail(where, "has no type hint")
        params.append(Field(p.name, builder.node(hints[p.name], where), number, p.default is not p.empty))
    if "return" not in hints:
        raise builder.fail("return", "has no type hint (write `-> None` for a function that returns nothing)")
    package = _package(info.name)
    args_proto = _proto_text(package, args_name, params)
    returns = hints["return"]
    result: Field | Message | None
    if returns is None or returns is type(None):
        result, result_proto = None, None
    else:
        node = builder.node(returns, "return")
        if isinstance(node, Message):
            result = node
            result_proto = _proto_text(package, node.proto_name, node.fields)
        else:
            result = Field("result", node, 1, False)
            result_proto = _proto_text(package, builder.name(f"{pascal}Result"), [result])
    return FunctionSchema(info.name, tuple(params), result, args_proto, result_proto)
