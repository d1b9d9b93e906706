"""Forms generated from a runner's settings or args message, and their posted values back to JSON.

The message is compiled from the runner's published .proto text by the CLI client's codec
(`client.protocodec`), and the form's values become the message's JSON mapping, which that
codec encodes; so a form and the raw-JSON alternative beside it go through the same checks.

Which input each field gets: strings and numbers a text or number box, bools a checkbox, enums a
select, bytes a base64 text box; a repeated scalar (or enum) a textarea with one value per line;
a map of scalars a textarea of `key=value` lines; a singular message a nested fieldset (a few
levels deep); anything else (a repeated message, a deeper message, a well-known type) a small
JSON textarea for that field alone. An empty input leaves the field out, so the message keeps its
default (and an `optional` field stays absent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

MAX_DEPTH = 3

_INTS = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
         FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
         FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED32,
         FieldDescriptor.TYPE_SFIXED64}
_FLOATS = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}


class FormError(ValueError):
    """A posted value that cannot be the field's (the message names the field)."""


@dataclass
class FormField:
    """One input of a generated form; `name` is its form key, `path` its place in the message."""

    name: str
    label: str
    kind: str  # text | number | checkbox | select | lines | pairs | json | group
    type_name: str
    value: str = ""
    checked: bool = False
    options: list[str] = field(default_factory=list)
    children: list[FormField] = field(default_factory=list)
    note: str = ""


def _is_map(f: FieldDescriptor) -> bool:
    return f.message_type is not None and f.message_type.GetOptions().map_entry


def _repeated(f: FieldDescriptor) -> bool:
    return bool(f.is_repeated)


def _type_name(f: FieldDescriptor) -> str:
    if f.message_type is not None:
        return f.message_type.name
    if f.enum_type is not None:
        return f.enum_type.name
    names = {v: k for k, v in vars(FieldDescriptor).items() if k.startswith("TYPE_")}
    return names.get(f.type, "?").removeprefix("TYPE_").lower()


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _oneof_note(f: FieldDescriptor) -> str:
    oneof = f.containing_oneof
    if oneof is None or (len(oneof.fields) == 1 and oneof.name.startswith("_")):  # proto3 `optional`
        return ""
    return "one of: " + ", ".join(o.name for o in oneof.fields)


def fields_of(descriptor: Descriptor, prefix: str, values: dict[str, Any] | None = None,
              depth: int = 0) -> list[FormField]:
    """The inputs for `descriptor`, filled from `values` (the message as JSON, proto field names)."""
    values = values or {}
    out: list[FormField] = []
    for f in descriptor.fields:
        name = f"{prefix}.{f.name}"
        current = values.get(f.name, values.get(f.json_name))
        item = FormField(name, f.name, "text", _type_name(f), note=_oneof_note(f))
        if _is_map(f):
            value_field = f.message_type.fields_by_name["value"]
            if value_field.message_type is None:
                item.kind = "pairs"
                item.value = "\n".join(f"{k}={_scalar_text(v)}" for k, v in (current or {}).items())
            else:
                item.kind, item.value = "json", json.dumps(current, indent=1) if current else ""
        elif f.message_type is not None:
            well_known = f.message_type.full_name.startswith("google.protobuf.")
            if _repeated(f) or well_known or depth + 1 >= MAX_DEPTH:
                item.kind, item.value = "json", json.dumps(current, indent=1) if current not in (None, [], {}) else ""
                if _repeated(f):
                    item.note = (item.note + "; " if item.note else "") + "a JSON array of objects"
            else:
                item.kind = "group"
                item.children = fields_of(f.message_type, name, current if isinstance(current, dict) else None,
                                          depth + 1)
        elif _repeated(f):
            item.kind = "lines"
            item.value = "\n".join(_scalar_text(v) for v in (current or []))
        elif f.type == FieldDescriptor.TYPE_BOOL:
            item.kind, item.checked = "checkbox", bool(current)
        elif f.enum_type is not None:
            item.kind = "select"
            item.options = [v.name for v in f.enum_type.values]
            item.value = _scalar_text(current)
        elif f.type in _INTS or f.type in _FLOATS:
            item.kind, item.value = "number", _scalar_text(current)
        else:
            item.value = _scalar_text(current)
            if f.type == FieldDescriptor.TYPE_BYTES:
                item.note = (item.note + "; " if item.note else "") + "base64"
        out.append(item)
    return out


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _scalar(f: FieldDescriptor, text: str, name: str) -> Any:
    """A posted string as the JSON value of a scalar field."""
    if f.type == FieldDescriptor.TYPE_BOOL:
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0"):
            raise FormError(f"{name}: expected true or false, got {text!r}")
        return lowered in ("true", "1")
    if f.type in _INTS:
        try:
            return int(text.strip())
        except ValueError:
            raise FormError(f"{name}: expected an integer, got {text!r}") from None
    if f.type in _FLOATS:
        try:
            return float(text.strip())
        except ValueError:
            raise FormError(f"{name}: expected a number, got {text!r}") from None
    return text  # strings, enum names, base64 bytes: as typed


def _json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise FormError(f"{name}: not valid JSON: {e}") from None


def collect(descriptor: Descriptor, form: dict[str, list[str]], prefix: str, depth: int = 0) -> dict[str, Any]:
    """The posted inputs of `fields_of(descriptor, prefix)` as the message's JSON (empty ones left out)."""
    out: dict[str, Any] = {}
    for f in descriptor.fields:
        name = f"{prefix}.{f.name}"
        if _is_map(f):
            text = _first(form, name) or ""
            if not text.strip():
                continue
            value_field = f.message_type.fields_by_name["value"]
            if value_field.message_type is not None:
                out[f.name] = _json(text, name)
                continue
            pairs: dict[str, Any] = {}
            for line in text.splitlines():
                if not line.strip():
                    continue
                key, sep, value = line.partition("=")
                if not sep:
                    raise FormError(f"{name}: expected key=value lines, got {line!r}")
                pairs[key.strip()] = _scalar(value_field, value.strip(), name)
            out[f.name] = pairs
        elif f.message_type is not None:
            well_known = f.message_type.full_name.startswith("google.protobuf.")
            if _repeated(f) or well_known or depth + 1 >= MAX_DEPTH:
                text = _first(form, name) or ""
                if text.strip():
                    out[f.name] = _json(text, name)
            else:
                nested = collect(f.message_type, form, name, depth + 1)
                if nested:
                    out[f.name] = nested
        elif _repeated(f):
            text = _first(form, name) or ""
            items = [line for line in text.splitlines() if line.strip()]
            if items:
                out[f.name] = [_scalar(f, line if f.type == FieldDescriptor.TYPE_STRING else line.strip(), name)
                               for line in items]
        elif f.type == FieldDescriptor.TYPE_BOOL:
            if _first(form, name) is not None:
                out[f.name] = True
        else:
            posted = _first(form, name)
            if posted is not None and posted != "":
                out[f.name] = _scalar(f, posted, name)
    return out
