"""RunnerService advertises each built-in runner's proto text; the server parses with the committed
descriptor set. Both must describe the same messages, field for field."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2

from jobworkerp.descriptors import descriptor_pool
from jobworkerp.runners.proto_text import compile_proto
from jobworkerp.runners.registry import BUILTIN_RUNNERS, RunnerSpec, load_runner_class

pytestmark = pytest.mark.timeout(60)


def _shape(message: descriptor_pb2.DescriptorProto) -> tuple:
    """What decides the wire format and the JSON/text names: fields and nested types, recursively."""
    fields = sorted(
        (f.name, f.number, f.label, f.type, f.type_name.lstrip("."), f.proto3_optional, f.HasField("oneof_index"))
        for f in message.field
    )
    nested = sorted((n.name, _shape(n)) for n in message.nested_type)
    enums = sorted((e.name, tuple((v.name, v.number) for v in e.value)) for e in message.enum_type)
    return tuple(fields), tuple(nested), tuple(enums)


def _compiled_messages(text: str) -> dict[str, descriptor_pb2.DescriptorProto]:
    fds = descriptor_pb2.FileDescriptorSet.FromString(compile_proto(text))
    out = {}
    for file_proto in fds.file:
        if file_proto.name == "plugin.proto":
            for message in file_proto.message_type:
                out[f"{file_proto.package}.{message.name}"] = message
    return out


def _committed(full_name: str) -> descriptor_pb2.DescriptorProto:
    proto = descriptor_pb2.DescriptorProto()
    descriptor_pool().FindMessageTypeByName(full_name).CopyToProto(proto)
    return proto


def _texts(spec: RunnerSpec) -> list[tuple[str, str]]:
    return [(kind, text) for kind, text in (("settings", spec.settings_proto), ("args", spec.args_proto),
                                            ("result", spec.result_proto or "")) if text.strip()]


@pytest.mark.parametrize("spec", BUILTIN_RUNNERS, ids=lambda s: s.name)
def test_advertised_protos_match_the_committed_descriptors(spec: RunnerSpec) -> None:
    for kind, text in _texts(spec):
        messages = _compiled_messages(text)
        assert messages, f"{spec.name} {kind} proto declares no message"
        for full_name, message in messages.items():
            assert _shape(message) == _shape(_committed(full_name)), f"{spec.name} {kind}: {full_name} drifted"


@pytest.mark.parametrize("spec", BUILTIN_RUNNERS, ids=lambda s: s.name)
def test_settings_message_is_the_first_message_of_the_settings_proto(spec: RunnerSpec) -> None:
    assert spec.settings_message is not None
    assert next(iter(_compiled_messages(spec.settings_proto))) == spec.settings_message


@pytest.mark.parametrize("spec", BUILTIN_RUNNERS, ids=lambda s: s.name)
def test_runner_class_matches_its_spec(spec: RunnerSpec) -> None:
    assert spec.ref is not None, f"{spec.name} has no implementation"
    cls = load_runner_class(spec.ref)
    assert (cls.name, cls.runner_type) == (spec.name, spec.runner_type)
    assert (cls.settings_proto, cls.args_proto, cls.result_proto) == (
        spec.settings_proto, spec.args_proto, spec.result_proto)
