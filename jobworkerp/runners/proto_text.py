"""Compiling .proto text into descriptors and message classes.

Plugins (and the built-in runners' RunnerService listing) describe their messages as .proto text,
not generated code. Three places need that text turned into something usable: discovery checks
that a plugin's protos compile, the registry validates a worker's settings bytes and a job's
args bytes against a plugin's settings and args messages, and plugins parse their own bytes
(`proto_messages`). They share this module so that all of them compile the text the same way,
with the same protoc.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace


def compile_proto(text: str, file_name: str = "plugin.proto") -> bytes:
    """Compile .proto text with protoc (grpcio-tools, in process); a serialized FileDescriptorSet.

    Raises ValueError with protoc's message when the text does not compile.
    """
    from grpc_tools import protoc

    include = str(Path(protoc.__file__).parent / "_proto")  # well-known types (google/protobuf/*.proto)
    with tempfile.TemporaryDirectory(prefix="jobworkerp-proto-") as tmp:
        source = Path(tmp, file_name)
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(text, encoding="utf-8")
        out = Path(tmp, "out.binpb")
        errors = Path(tmp, "errors.txt")
        # protoc reports on fd 2 from C++; capture it for the message.
        saved = os.dup(2)
        try:
            with open(errors, "wb") as sink:
                os.dup2(sink.fileno(), 2)
                rc = protoc.main(["protoc", f"-I{tmp}", f"-I{include}", f"--descriptor_set_out={out}",
                                  "--include_imports", file_name])
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        if rc != 0:
            message = errors.read_text(errors="replace").strip().replace(f"{tmp}{os.sep}", "")
            raise ValueError(message or f"protoc exited with {rc}")
        return out.read_bytes()


def first_message(descriptor_set: bytes, file_name: str = "plugin.proto") -> str | None:
    """Full name of the first message declared in `file_name` (the settings/args type by convention)."""
    from google.protobuf import descriptor_pb2

    for file_proto in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file:
        if file_proto.name == file_name and file_proto.message_type:
            prefix = f"{file_proto.package}." if file_proto.package else ""
            return prefix + file_proto.message_type[0].name
    return None


@functools.cache
def _message_classes(descriptor_set: bytes) -> dict[str, type]:
    """Every top-level message class of a descriptor set, by full name (cached: building a pool is slow)."""
    from google.protobuf import descriptor_pb2, message_factory
    from google.protobuf.descriptor_pool import DescriptorPool

    pool = DescriptorPool()
    classes: dict[str, type] = {}
    for file_proto in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file:
        pool.Add(file_proto)
    for file_proto in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file:
        prefix = f"{file_proto.package}." if file_proto.package else ""
        for message in file_proto.message_type:
            classes[prefix + message.name] = message_factory.GetMessageClass(
                pool.FindMessageTypeByName(prefix + message.name))
    return classes


def message_class(descriptor_set: bytes, full_name: str) -> type:
    """The google.protobuf message class `full_name` of a compiled descriptor set."""
    return _message_classes(descriptor_set)[full_name]


@functools.cache
def proto_messages(text: str) -> SimpleNamespace:
    """Message classes (google.protobuf) for .proto text, by short name: for plugins to parse their bytes.

    `proto_messages(SETTINGS_PROTO).HelloRunnerSettings.FromString(settings)`.
    """
    descriptor_set = compile_proto(text)
    return SimpleNamespace(**{name.rpartition(".")[2]: cls for name, cls in _message_classes(descriptor_set).items()})
