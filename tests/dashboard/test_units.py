"""Pure parts of the dashboard: where it listens per mode, and generated forms <-> JSON."""

from __future__ import annotations

import json

import pytest

from jobworkerp.client.protocodec import compile_first_message
from jobworkerp.config import ConfigError, check_grpc_exposure, load_config
from jobworkerp.dashboard.listen import DEFAULT_ADDR, dashboard_listen
from jobworkerp.dashboard.protoform import FormError, collect, fields_of

PROTO = """
syntax = "proto3";
package t;
message Args {
  message KeyValue { string key = 1; string value = 2; }
  message Inner { int32 n = 1; optional string label = 2; }
  repeated string words = 1;
  int64 count = 2;
  bool flag = 3;
  enum Mode { A = 0; B = 1; }
  Mode mode = 4;
  map<string, string> env = 5;
  repeated KeyValue headers = 6;
  Inner inner = 7;
  optional string maybe = 8;
  double ratio = 9;
}
"""


def test_where_the_dashboard_listens() -> None:
    unset = load_config({}, None)
    listen = dashboard_listen(unset, "all-in-one")
    assert listen is not None and listen.text == DEFAULT_ADDR and not listen.explicit
    assert dashboard_listen(unset, "grpc-front") is None
    assert dashboard_listen(load_config({"DASHBOARD_ADDR": ""}, None), "all-in-one") is None
    explicit = dashboard_listen(load_config({"DASHBOARD_ADDR": "127.0.0.1:9999"}, None), "grpc-front")
    assert explicit is not None and explicit.port == 9999 and explicit.explicit


def test_an_exposed_dashboard_needs_a_token_or_tls() -> None:
    with pytest.raises(ConfigError, match="DASHBOARD_ADDR"):
        check_grpc_exposure(load_config({"DASHBOARD_ADDR": "0.0.0.0:9080"}, None))
    assert check_grpc_exposure(load_config({"DASHBOARD_ADDR": "0.0.0.0:9080", "AUTH_TOKEN": "t"}, None))


def test_a_form_round_trips_through_the_message() -> None:
    codec = compile_first_message(PROTO)
    descriptor = codec.message_class.DESCRIPTOR
    form = {
        "args.words": ["one\r\ntwo words\r\n"], "args.count": ["12"], "args.flag": ["true"], "args.mode": ["B"],
        "args.env": ["A=1\nB = two"], "args.headers": ['[{"key": "k", "value": "v"}]'],
        "args.inner.n": ["3"], "args.inner.label": [""], "args.maybe": [""], "args.ratio": ["0.5"],
    }
    value = collect(descriptor, form, "args")
    assert value == {"words": ["one", "two words"], "count": 12, "flag": True, "mode": "B",
                     "env": {"A": "1", "B": "two"}, "headers": [{"key": "k", "value": "v"}], "inner": {"n": 3},
                     "ratio": 0.5}
    decoded = codec.decode(codec.encode_json(json.dumps(value), "args"))
    kinds = {f.label: f for f in fields_of(descriptor, "args", decoded)}
    assert kinds["words"].kind == "lines" and kinds["words"].value == "one\ntwo words"
    assert kinds["flag"].kind == "checkbox" and kinds["flag"].checked
    assert kinds["mode"].kind == "select" and kinds["mode"].value == "B" and kinds["mode"].options == ["A", "B"]
    assert kinds["env"].kind == "pairs" and kinds["headers"].kind == "json"
    assert kinds["inner"].kind == "group" and kinds["inner"].children[0].value == "3"
    assert "maybe" not in decoded or decoded["maybe"] == ""


def test_bad_values_name_their_field() -> None:
    descriptor = compile_first_message(PROTO).message_class.DESCRIPTOR
    with pytest.raises(FormError, match="args.count"):
        collect(descriptor, {"args.count": ["many"]}, "args")
    with pytest.raises(FormError, match="args.headers"):
        collect(descriptor, {"args.headers": ["[not json"]}, "args")
    with pytest.raises(FormError, match="args.env"):
        collect(descriptor, {"args.env": ["no equals sign"]}, "args")
