"""JSON <-> protobuf through runner proto text compiled at run time (in-process, no server)."""

from __future__ import annotations

import pytest

from jobworkerp.client.protocodec import (
    CodecError,
    compile_first_message,
    decode_value,
    encode_input,
    first_message_name,
)
from jobworkerp.proto.jobworkerp import runner as runner_pb

pytestmark = pytest.mark.timeout(30)

ARGS_PROTO = """syntax = "proto3";
package test.cli;
// message NotThisOne {}  (comments do not count)
message Args {
  message Pair { string key = 1; string value = 2; }
  repeated Pair pairs = 1;
  optional string body_text = 2;
  map<string, Pair> named = 3;
  int64 big = 4;
}
message Second { string x = 1; }
"""

COMMAND_ARGS_PROTO = """syntax = "proto3";
package jobworkerp.runner;
message CommandArgs { repeated string args = 1; }
"""


def test_first_message_is_the_type() -> None:
    assert compile_first_message(ARGS_PROTO).full_name == "test.cli.Args"
    assert first_message_name(ARGS_PROTO) == "Args"
    assert first_message_name("") is None


def test_encoding_matches_the_generated_classes() -> None:
    raw = encode_input(COMMAND_ARGS_PROTO, '{"args":["a","b"]}', "--args")
    assert runner_pb.CommandArgs.parse(raw).args == ["a", "b"]


def test_round_trip_with_nested_map_and_json_names() -> None:
    text = '{"pairs":[{"key":"k","value":"v"}],"bodyText":"hi","named":{"x":{"key":"a"}},"big":"12345678901234"}'
    decoded = decode_value(ARGS_PROTO, encode_input(ARGS_PROTO, text, "--args"))
    assert decoded["pairs"] == [{"key": "k", "value": "v"}]
    assert decoded["body_text"] == "hi"
    assert decoded["named"] == {"x": {"key": "a", "value": ""}}
    assert decoded["big"] == "12345678901234"


@pytest.mark.parametrize(("text", "field", "valid"), [
    ('{"nope":1}', '"nope"', "valid fields: pairs, body_text, named, big"),
    ('{"pairs":[{"key":"k","vale":"v"}]}', '"pairs[0].vale"', "valid fields: key, value"),
    ('{"named":{"x":{"kee":"a"}}}', '"named[x].kee"', "valid fields: key, value"),
])
def test_unknown_fields_are_named_with_the_valid_ones(text: str, field: str, valid: str) -> None:
    with pytest.raises(CodecError) as info:
        encode_input(ARGS_PROTO, text, "--args")
    message = str(info.value)
    assert field in message and valid in message and "\n" not in message


def test_bad_json_and_wrong_types_are_one_line() -> None:
    for text in ('{"pairs":', '[1, 2]', '{"big": "not a number"}'):
        with pytest.raises(CodecError) as info:
            encode_input(ARGS_PROTO, text, "--args")
        assert "\n" not in str(info.value)


def test_empty_proto_means_raw_utf8_both_ways() -> None:
    assert encode_input("", "plain text é", "--args") == "plain text é".encode()
    assert decode_value("", "plain text é".encode()) == "plain text é"
    assert decode_value(None, b"\xff\x00") == {"base64": "/wA="}


def test_undecodable_bytes_fall_back_to_raw() -> None:
    assert decode_value(COMMAND_ARGS_PROTO, b"\xff\xff\xff") == {"base64": "////"}


def test_well_known_imports_compile() -> None:
    proto = ('syntax = "proto3";\nimport "google/protobuf/timestamp.proto";\n'
             "message At { google.protobuf.Timestamp when = 1; }\n")
    decoded = decode_value(proto, encode_input(proto, '{"when":"2024-01-02T03:04:05Z"}', "--args"))
    assert decoded == {"when": "2024-01-02T03:04:05Z"}


def test_broken_proto_text_is_one_line_without_temp_paths() -> None:
    with pytest.raises(CodecError) as info:
        compile_first_message('syntax = "proto3";\nmessage Broken { string x = ; }\n')
    message = str(info.value)
    assert message.startswith("cannot compile the runner's proto text:")
    assert "\n" not in message and "jobworkerp-proto-" not in message
