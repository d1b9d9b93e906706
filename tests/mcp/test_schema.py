"""A runner's args message as a tool's JSON Schema: every protobuf shape, and agreement with the
JSON mapping that turns the arguments into the message (what the schema allows, the codec takes)."""

from __future__ import annotations

import base64
import json

import jsonschema
import pytest

from jobworkerp.client.protocodec import compile_first_message
from jobworkerp.mcp.schema import message_schema

pytestmark = pytest.mark.timeout(30)

PROTO = """syntax = "proto3";
package t;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

message Args {
  enum Mode { MODE_UNSPECIFIED = 0; FAST = 1; }
  message Header { string key = 1; string value = 2; }
  string text = 1;
  repeated Header headers = 2;
  Mode mode = 3;
  bytes payload = 4;
  int64 big = 5;
  uint32 small = 6;
  map<string, Header> by_name = 7;
  map<int32, string> by_number = 8;
  oneof target { string url = 9; Node tree = 10; }
  optional bool flag = 11;
  google.protobuf.Timestamp at = 12;
  google.protobuf.StringValue maybe = 13;
  repeated double weights = 14;
}

message Node {
  string label = 1;
  repeated Node children = 2;
}
"""


@pytest.fixture(scope="module")
def schema() -> dict:
    return message_schema(compile_first_message(PROTO).message_class.DESCRIPTOR)


def test_every_field_shape(schema: dict) -> None:
    props = schema["properties"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert "required" not in schema  # proto3: every field may be left out
    assert props["text"] == {"type": "string"}
    header = {"type": "object", "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
              "additionalProperties": False}
    assert props["headers"] == {"type": "array", "items": header}
    assert props["mode"] == {"type": "string", "enum": ["MODE_UNSPECIFIED", "FAST"]}
    assert props["payload"] == {"type": "string", "contentEncoding": "base64"}
    assert props["big"]["type"] == ["integer", "string"]
    assert props["small"] == {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
    assert props["byName"] == {"type": "object", "additionalProperties": header}  # json_name
    assert props["byNumber"] == {"type": "object", "additionalProperties": {"type": "string"},
                                 "propertyNames": {"pattern": "^-?[0-9]+$"}}
    assert props["flag"] == {"type": "boolean"}
    assert props["at"]["format"] == "date-time"
    assert props["maybe"] == {"type": "string"}
    assert props["weights"] == {"type": "array", "items": {"type": "number"}}


def test_a_oneof_is_described_and_proto3_optional_is_not_one(schema: dict) -> None:
    assert schema["description"] == "Set at most one of url, tree (oneof target)"


def test_a_recursive_message_is_finite(schema: dict) -> None:
    tree = schema["properties"]["tree"]
    assert tree["properties"]["label"] == {"type": "string"}
    child = tree["properties"]["children"]["items"]
    assert child["type"] == "object" and "properties" not in child
    json.dumps(schema)  # no cycles


def test_what_the_schema_allows_the_codec_takes(schema: dict) -> None:
    arguments = {
        "text": "hi", "headers": [{"key": "a", "value": "b"}], "mode": "FAST",
        "payload": base64.b64encode(b"\x00\xff").decode(), "big": "9007199254740993", "small": 7,
        "byName": {"x": {"key": "k"}}, "byNumber": {"-3": "minus three"},
        "tree": {"label": "root", "children": [{"label": "leaf", "children": [{"label": "deeper"}]}]},
        "flag": False, "at": "2024-01-31T12:00:00Z", "maybe": "yes", "weights": [0.5, 2],
    }
    jsonschema.validate(arguments, schema)
    codec = compile_first_message(PROTO)
    message = codec.message_class.FromString(codec.encode_json(json.dumps(arguments), "arguments"))
    assert (message.big, message.payload, message.tree.children[0].children[0].label) == (
        9007199254740993, b"\x00\xff", "deeper")
    assert message.HasField("flag")


def test_what_the_codec_refuses_the_schema_refuses(schema: dict) -> None:
    for wrong in ({"unknown": 1}, {"mode": "SLOW"}, {"small": -1}, {"headers": [{"key": 1}]},
                  {"headers": [{"nope": "x"}]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)
