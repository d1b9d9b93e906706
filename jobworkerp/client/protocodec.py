"""Turn JSON into a runner's protobuf bytes and back, using the runner's own .proto text.

Runners describe their settings, args and output as .proto source text. The client compiles that
text at run time with protoc (from grpcio-tools, in-process), takes the first message declared,
and uses protobuf's standard JSON mapping — so any runner, including plugins the client has never
heard of, gets JSON in and JSON out without generated code. Compiled messages are cached by
proto text for the life of the process. The Python client (`jobworkerp.client`) encodes plain
dicts the same way (`encode_value`), and the CLI its `--settings`/`--args` JSON text.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_PROTO_FILE = "runner_message.proto"


class CodecError(ValueError):
    """Input that cannot become the runner's message, or proto text that cannot be compiled."""


@dataclass(frozen=True)
class MessageCodec:
    """JSON <-> binary for one protobuf message type compiled from runner proto text."""

    message_class: type[Any]  # a generated google.protobuf Message class
    full_name: str

    def encode_json(self, text: str, what: str) -> bytes:
        """JSON text -> binary; `what` names the option for error messages (e.g. "--args")."""
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise CodecError(f"{what} is not valid JSON: {e}") from None
        if not isinstance(value, dict):
            raise CodecError(f"{what} must be a JSON object for {self.full_name}, got {type(value).__name__}")
        return self.encode_value(value, what)

    def encode_value(self, value: Mapping[str, Any], what: str) -> bytes:
        """A JSON-ready mapping (protobuf's JSON mapping: bytes as base64) -> binary."""
        value = dict(value)
        message = self.message_class()
        _check_known_fields(value, message.DESCRIPTOR, what, "")
        from google.protobuf import json_format

        try:
            json_format.ParseDict(value, message)
        except json_format.ParseError as e:
            detail = " ".join(str(e).split())
            raise CodecError(f"{what} does not match {self.full_name}: {detail}") from None
        return message.SerializeToString()

    def decode(self, raw: bytes) -> dict[str, Any]:
        """Binary -> JSON-ready dict (proto field names, defaults shown). Raises on undecodable bytes."""
        from google.protobuf import json_format

        message = self.message_class.FromString(raw)
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)


def _check_known_fields(value: dict, descriptor: Any, what: str, path: str) -> None:
    """Reject unknown JSON keys with the valid ones listed, at any depth.

    protobuf's own error says much the same, but in a multi-line, version-dependent format; this
    gives one stable line that names the field and its message.
    """
    if descriptor.full_name.startswith("google.protobuf."):
        return  # well-known types have special JSON forms; json_format checks them
    fields = {}
    for f in descriptor.fields:
        fields[f.name] = f
        fields[f.json_name] = f
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            valid = ", ".join(f.name for f in descriptor.fields) or "(none)"
            raise CodecError(f'{what}: unknown field "{path}{key}" in {descriptor.full_name}; valid fields: {valid}')
        sub = field.message_type
        if sub is None:
            continue
        if sub.GetOptions().map_entry:
            value_type = sub.fields_by_name["value"].message_type
            if value_type is not None and isinstance(item, dict):
                for k, element in item.items():
                    if isinstance(element, dict):
                        _check_known_fields(element, value_type, what, f"{path}{key}[{k}].")
        elif field.is_repeated:
            if isinstance(item, list):
                for i, element in enumerate(item):
                    if isinstance(element, dict):
                        _check_known_fields(element, sub, what, f"{path}{key}[{i}].")
        elif isinstance(item, dict):
            _check_known_fields(item, sub, what, f"{path}{key}.")


def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)


def first_message_name(proto_text: str) -> str | None:
    """The first message declared in proto text, found without compiling (for listings)."""
    match = re.search(r"\bmessage\s+([A-Za-z_]\w*)", _strip_comments(proto_text or ""))
    return match.group(1) if match else None


def _run_protoc(argv: list[str]) -> tuple[int, str]:
    """protoc prints diagnostics on file descriptor 2; capture them instead of leaking them."""
    from grpc_tools import protoc

    with tempfile.TemporaryFile() as err:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(err.fileno(), 2)
        try:
            code = protoc.main(argv)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        err.seek(0)
        return code, err.read().decode(errors="replace")


@functools.lru_cache(maxsize=64)
def compile_first_message(proto_text: str) -> MessageCodec:
    """Compile proto text (its own descriptor pool: runners may reuse message names) -> first message."""
    import importlib.resources

    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    include = str(importlib.resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory(prefix="jobworkerp-proto-") as tmp:
        with open(os.path.join(tmp, _PROTO_FILE), "w", encoding="utf-8") as f:
            f.write(proto_text)
        out = os.path.join(tmp, "descriptor_set.binpb")
        code, diagnostics = _run_protoc(["protoc", f"-I{tmp}", f"-I{include}", "--include_imports",
                                         f"--descriptor_set_out={out}", os.path.join(tmp, _PROTO_FILE)])
        if code != 0:
            detail = " ".join(diagnostics.replace(tmp + os.sep, "").split()) or f"protoc exit {code}"
            raise CodecError(f"cannot compile the runner's proto text: {detail}")
        with open(out, "rb") as f:
            files = descriptor_pb2.FileDescriptorSet.FromString(f.read()).file
    pool = descriptor_pool.DescriptorPool()
    for file in files:  # --include_imports lists dependencies first
        pool.Add(file)
    main = files[-1]
    if not main.message_type:
        raise CodecError("the runner's proto text declares no message")
    full_name = f"{main.package}.{main.message_type[0].name}" if main.package else main.message_type[0].name
    descriptor = pool.FindMessageTypeByName(full_name)
    return MessageCodec(message_factory.GetMessageClass(descriptor), full_name)


def encode_input(proto_text: str | None, text: str, what: str) -> bytes:
    """Settings/args from the command line: JSON via the runner's message, raw UTF-8 if it has none."""
    if not (proto_text or "").strip():
        return text.encode()
    return compile_first_message(proto_text).encode_json(text, what)


def raw_value(raw: bytes) -> str | dict[str, str]:
    """Bytes with no message to decode them: text when UTF-8, else `{"base64": ...}` (never mangled)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}


def decode_value(proto_text: str | None, raw: bytes) -> Any:
    """Bytes for display: the message as JSON when proto text is given and fits, else `raw_value`."""
    if (proto_text or "").strip():
        try:
            return compile_first_message(proto_text).decode(raw)
        except Exception:  # a plugin's proto that fails to compile or mismatched bytes: show them raw
            pass
    return raw_value(raw)
