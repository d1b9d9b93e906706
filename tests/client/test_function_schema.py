"""Type hints -> proto text, Python values <-> messages, and the runner class hosts run (no server)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

import jobworkerp
from jobworkerp.functions.schema import SchemaError, derive_schema
from jobworkerp.runners.base import AbortError, OtherError
from jobworkerp.runners.functions import function_runner_class
from jobworkerp.runners.plugin_discovery import describe, discover
from jobworkerp.runners.plugins import plugin_factory, proto_messages

pytestmark = pytest.mark.timeout(60)


@dataclass
class Inner:
    name: str
    weight: float = 1.0


@dataclass
class Tree:
    value: int
    children: list[Tree] = field(default_factory=list)
    inner: Inner | None = None


@jobworkerp.function
def everything(s: str, i: int, f: float, b: bool, raw: bytes, names: list[str], counts: dict[str, int],
               by_id: dict[int, Inner], flags: dict[bool, str], inner: Inner, inners: list[Inner],
               maybe: Optional[int], maybe_inner: Inner | None, tree: Tree, with_default: int = 7) -> Tree:  # noqa: UP045
    return tree


@jobworkerp.function(name="Say-Hi!", concurrent=True)
def say(who: str) -> str:
    return f"hi {who}"


@jobworkerp.function
def nothing() -> None:
    pass


def test_the_decorator_returns_the_function_itself() -> None:
    assert say("you") == "hi you"  # still an ordinary function
    runner = function_runner_class(say)
    assert runner.name == "Say-Hi!" and runner.concurrent is True and function_runner_class(nothing).concurrent is False
    with pytest.raises(TypeError):
        jobworkerp.function(Inner)


def test_proto_text_of_a_small_function() -> None:
    schema = derive_schema(say)
    assert schema.args_proto == ('syntax = "proto3";\npackage jobworkerp.functions.say_hi_;\n\n'
                                 'message SayHiArgs {\n  string who = 1;\n}\n')
    assert schema.result_proto == ('syntax = "proto3";\npackage jobworkerp.functions.say_hi_;\n\n'
                                   'message SayHiResult {\n  string result = 1;\n}\n')
    assert derive_schema(nothing).result_proto is None and derive_schema(nothing).args_proto.count("=") == 1


def test_every_supported_hint_has_its_field() -> None:
    text = derive_schema(everything).args_proto
    for line in ("string s = 1;", "int64 i = 2;", "double f = 3;", "bool b = 4;", "bytes raw = 5;",
                 "repeated string names = 6;", "map<string, int64> counts = 7;", "map<int64, Inner> by_id = 8;",
                 "map<bool, string> flags = 9;", "Inner inner = 10;", "repeated Inner inners = 11;",
                 "optional int64 maybe = 12;", "Inner maybe_inner = 13;", "Tree tree = 14;",
                 "optional int64 with_default = 15;",
                 "message Tree {\n  int64 value = 1;\n  repeated Tree children = 2;\n  Inner inner = 3;\n}",
                 "message Inner {\n  string name = 1;\n  optional double weight = 2;\n}"):
        assert line in text, line
    assert text.index("message EverythingArgs") < text.index("message Inner")  # the args message is first
    assert derive_schema(everything).result_proto.startswith(
        'syntax = "proto3";\npackage jobworkerp.functions.everything;\n\nmessage Tree {')
    proto_messages(text)  # protoc accepts it


def _bad(annotation: str) -> Any:
    namespace: dict[str, Any] = {}
    exec(f"def bad(x: {annotation}) -> int:\n    return 0", {"Any": Any, "Optional": Optional}, namespace)
    return jobworkerp.function(namespace["bad"])


@pytest.mark.parametrize(("annotation", "why"), [
    ("int | str", "is a union"),
    ("Any", "unsupported type Any"),
    ("complex", "unsupported type complex"),
    ("list[list[int]]", "list items must be scalars or dataclasses"),
    ("list[int] | None", "None cannot be told from an empty list"),
    ("Optional[dict[str, int]]", "None cannot be told from an empty dict"),
    ("dict[float, int]", "dict keys must be str, int or bool"),
    ("list", "give the item types"),
])
def test_unsupported_hints_are_refused_naming_function_and_parameter(annotation: str, why: str) -> None:
    with pytest.raises(SchemaError, match=r"^function bad: parameter x.*") as refused:
        derive_schema(_bad(annotation))
    assert why in str(refused.value)


def test_unusable_signatures_are_refused() -> None:
    def star(*xs: int) -> int:
        return 0

    def untyped(x) -> int:  # type: ignore[no-untyped-def]
        return 0

    def no_return(x: int):  # type: ignore[no-untyped-def]
        return x

    for fn, why in ((star, "parameter xs: *args and **kwargs"), (untyped, "parameter x: has no type hint"),
                    (no_return, "return: has no type hint")):
        with pytest.raises(SchemaError, match=re.escape(why)):
            derive_schema(jobworkerp.function(fn))


def _run(fn: Any, args: bytes) -> list[bytes]:
    runner = function_runner_class(fn)()
    runner.load(b"")
    return runner.run(args)


def test_values_cross_the_runner_and_come_back_as_they_were() -> None:
    schema = derive_schema(everything)
    Args = proto_messages(schema.args_proto).EverythingArgs  # noqa: N806 - a message class
    from google.protobuf import json_format

    tree = {"value": "-9223372036854775808", "children": [{"value": "1", "inner": {"name": "ü", "weight": "NaN"}}]}
    args = json_format.ParseDict({"s": "x", "i": str(2**63 - 1), "f": "Infinity", "raw": "AA==", "tree": tree,
                                  "inner": {"name": "i"}}, Args())
    [out] = _run(everything, args.SerializeToString())
    back = proto_messages(schema.result_proto).Tree.FromString(out)
    assert back.value == -(2**63) and back.children[0].value == 1 and math.isnan(back.children[0].inner.weight)
    assert back.children[0].inner.name == "ü"
    with pytest.raises(OtherError, match="args.inner: required, but not set"):  # a dataclass without a default
        _run(everything, Args(tree={"value": 1}).SerializeToString())

    from jobworkerp.functions.convert import decode_fields, encode_fields

    values = {"s": "x", "i": -1, "f": -math.inf, "b": True, "raw": b"\xff", "names": [], "counts": {"a": 1},
              "by_id": {3: Inner("three")}, "flags": {False: "no"}, "inner": Inner("i", 0.5), "inners": [Inner("j")],
              "maybe": None, "maybe_inner": None, "tree": Tree(1, [Tree(2)], Inner("n")), "with_default": 0}
    wire = json_format.MessageToDict(json_format.ParseDict(encode_fields(schema.params, values), Args()),
                                     preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    assert decode_fields(schema.params, wire) == values


def test_bad_args_and_bad_returns_fail_the_job_with_the_reason() -> None:
    with pytest.raises(OtherError, match="not a say args message|args"):
        _run(say, b"\xff\xff\xff")

    @jobworkerp.function
    def liar() -> int:
        return "not an int"  # type: ignore[return-value]

    with pytest.raises(OtherError, match="returned a value that does not fit its hint: return.result: expected int"):
        _run(liar, b"")
    assert _run(nothing, b"") == []


def test_a_concurrent_async_function_is_cancelled_from_another_thread() -> None:
    started = threading.Event()

    @jobworkerp.function(concurrent=True)
    async def wait_long(seconds: float) -> str:
        import asyncio

        started.set()
        await asyncio.sleep(seconds)
        return "woke"

    runner = function_runner_class(wait_long)()
    Args = proto_messages(derive_schema(wait_long).args_proto).WaitLongArgs  # noqa: N806
    outcome: list[BaseException | list[bytes]] = []

    def job() -> None:
        try:
            outcome.append(runner.run(Args(seconds=3600).SerializeToString()))
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=job)
    thread.start()
    assert started.wait(30)
    deadline = time.monotonic() + 30
    while runner._task is None and time.monotonic() < deadline:  # set right after the coroutine starts
        time.sleep(0.01)
    runner.cancel()
    thread.join(30)
    assert isinstance(outcome[0], AbortError) and "cancelled" in str(outcome[0])


def test_discovery_serves_good_functions_and_reports_bad_hints(tmp_path: Path) -> None:
    (tmp_path / "mixed.py").write_text(
        "import jobworkerp\n\n"
        "@jobworkerp.function\ndef good(x: int) -> int:\n    return x\n\n"
        "@jobworkerp.function\ndef bad(x: complex) -> int:\n    return 0\n")
    found = discover([str(tmp_path)], include_entry_points=False)
    assert [p.name for p in found.plugins] == ["good"]
    assert found.plugins[0].args_message == "jobworkerp.functions.good.GoodArgs"
    assert found.problems == [f"plugin {tmp_path / 'mixed.py'}: skipped: function bad: parameter x: "
                              "unsupported type complex (supported: str, int, float, bool, bytes, list[T], "
                              "dict[K, V], dataclasses, T | None)"]
    runner = plugin_factory(found.plugins[0].target)()  # what a host builds from the recorded target
    Args = proto_messages(found.plugins[0].args_proto).GoodArgs  # noqa: N806
    assert runner.run(Args(x=5).SerializeToString()) != []


def test_an_entry_point_may_name_a_function() -> None:
    report = describe("entry_point", "shapes:add")  # tests/client/functions is on sys.path (conftest)
    assert report["problems"] == [] and report["runners"][0]["name"] == "add"
    assert report["runners"][0]["target"] == "shapes:add"


def test_import_jobworkerp_and_the_decorator_stay_light() -> None:
    probe = ("import sys, jobworkerp\n@jobworkerp.function\ndef f(x: int) -> int:\n    return x\n"
             "heavy = ('grpclib', 'google.protobuf', 'betterproto2', 'trio', 'jobworkerp.functions.schema',"
             " 'jobworkerp.runners')\nprint([m for m in heavy if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
