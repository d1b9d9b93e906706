"""The JSON Schema of a protobuf message, as an MCP tool's `inputSchema`.

A tool call's arguments are turned into the runner's args message by protobuf's own JSON mapping
(`protocodec.MessageCodec.encode_json`), so the schema describes exactly what that mapping
accepts, in the spelling an agent is most likely to get right:

- message -> `object` with one property per field, named by its `json_name` (the parser also
  accepts the proto field name); `additionalProperties: false`, since unknown keys are refused;
  proto2 `required` fields are `required`, proto3 fields never are (absent = default value);
- repeated -> `array`; `map<K, V>` -> `object` whose values follow V (keys are strings in JSON);
- nested messages are inlined; a message that contains itself (directly or further down) is
  inlined once and its recursive occurrence becomes a plain `object`, so the schema is finite;
- enum -> `string` with the value names (the parser also takes numbers; the names say more);
- bytes -> `string` with `contentEncoding: base64`;
- 64-bit integers -> `integer` or a decimal `string` (protobuf JSON writes them as strings, since
  a double cannot hold every 64-bit value); 32-bit integers carry their range;
- a `oneof` (proto3 `optional` aside, which is just an optional field) lists its fields as
  ordinary optional properties and says in the message's description that at most one may be
  set: JSON Schema can express that (`not`/`required` pairs), but agents read descriptions;
- well-known types take their JSON forms (Timestamp and Duration strings, Struct objects, ...).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

Schema = dict[str, Any]

_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
_UINT64 = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}
_INT32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
_UINT32 = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}


def _int64_schema(signed: bool) -> Schema:
    return {"type": ["integer", "string"], "pattern": "^-?[0-9]+$" if signed else "^[0-9]+$",
            **({} if signed else {"minimum": 0}),
            "description": "64-bit integer (a decimal string is accepted too)"}


def _bytes_schema() -> Schema:
    return {"type": "string", "contentEncoding": "base64"}


_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time",
                                  "description": "RFC 3339 time, e.g. 2024-01-31T12:00:00Z"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$",
                                 "description": "seconds with an s suffix, e.g. 1.5s"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object", "properties": {}, "additionalProperties": False},
    "google.protobuf.FieldMask": {"type": "string", "description": "comma-separated lowerCamel field paths"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}, "required": ["@type"]},
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int64Value": _int64_schema(True),
    "google.protobuf.UInt64Value": _int64_schema(False),
    "google.protobuf.Int32Value": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    "google.protobuf.UInt32Value": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": _bytes_schema(),
}

# A runner whose args have no message: the tool's one argument is the raw text sent as the args.
RAW_ARGS_PROPERTY = "input"
RAW_ARGS_SCHEMA: Schema = {
    "type": "object",
    "properties": {RAW_ARGS_PROPERTY: {"type": "string", "description": "the job's args, sent as UTF-8 bytes"}},
    "additionalProperties": False,
}


def message_schema(descriptor: Descriptor) -> Schema:
    """The JSON Schema of `descriptor`'s protobuf JSON form (a fresh dict every call)."""
    return _message(descriptor, ())


def _message(descriptor: Descriptor, path: tuple[str, ...]) -> Schema:
    well_known = _WELL_KNOWN.get(descriptor.full_name)
    if well_known is not None:
        return dict(well_known)
    if descriptor.full_name in path:
        return {"type": "object", "description": f"a {descriptor.full_name} message (recursive: same fields as above)"}
    inner = (*path, descriptor.full_name)
    properties: Schema = {}
    required: list[str] = []
    for field in descriptor.fields:
        properties[field.json_name] = _field(field, inner)
        if field.is_required:
            required.append(field.json_name)
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    notes = [f"set at most one of {', '.join(names)} (oneof {name})" for name, names in _real_oneofs(descriptor)]
    if notes:
        text = "; ".join(notes)
        schema["description"] = text[0].upper() + text[1:]
    return schema


def _real_oneofs(descriptor: Descriptor) -> list[tuple[str, list[str]]]:
    """Declared oneofs with their fields' JSON names; the synthetic ones of proto3 `optional`
    fields (one field each, the field itself optional) are left out."""
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    synthetic = {f.oneof_index for f in proto.field if f.proto3_optional and f.HasField("oneof_index")}
    return [(oneof.name, [f.json_name for f in oneof.fields])
            for index, oneof in enumerate(descriptor.oneofs) if index not in synthetic]


def _field(field: FieldDescriptor, path: tuple[str, ...]) -> Schema:
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        value = _single(message.fields_by_name["value"], path)
        key_type = message.fields_by_name["key"].type
        schema: Schema = {"type": "object", "additionalProperties": value}
        if key_type in _INT32 | _INT64:
            schema["propertyNames"] = {"pattern": "^-?[0-9]+$"}
        elif key_type in _UINT32 | _UINT64:
            schema["propertyNames"] = {"pattern": "^[0-9]+$"}
        elif key_type == FieldDescriptor.TYPE_BOOL:
            schema["propertyNames"] = {"enum": ["true", "false"]}
        return schema
    if field.is_repeated:
        return {"type": "array", "items": _single(field, path)}
    return _single(field, path)


def _single(field: FieldDescriptor, path: tuple[str, ...]) -> Schema:
    """The schema of one value of `field` (an element, for repeated fields)."""
    t = field.type
    if t in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
        return _message(field.message_type, path)
    if t == FieldDescriptor.TYPE_ENUM:
        return {"type": "string", "enum": [value.name for value in field.enum_type.values]}
    if t == FieldDescriptor.TYPE_STRING:
        return {"type": "string"}
    if t == FieldDescriptor.TYPE_BYTES:
        return _bytes_schema()
    if t == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return {"type": "number"}
    if t in _INT32:
        return {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
    if t in _UINT32:
        return {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
    if t in _INT64:
        return _int64_schema(True)
    if t in _UINT64:
        return _int64_schema(False)
    return {}  # a type protobuf adds later: anything goes, the parser decides
