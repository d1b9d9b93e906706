"""Protobuf descriptors of our .proto files, from the FileDescriptorSet `just proto` commits.

Used for gRPC server reflection (so grpcurl needs no proto files) and for strict parsing:
betterproto2 accepts truncated or malformed bytes silently, while the upb parser rejects them,
so worker settings (before they are stored) and job args (at Enqueue) are checked with these
descriptors; `check_parses` is the same check for message classes compiled elsewhere (plugins).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from importlib import resources

from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

DESCRIPTOR_SET = "descriptor_set.binpb"


@functools.cache
def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """Every .proto file of ours, with the files they import."""
    raw = resources.files("jobworkerp.proto").joinpath(DESCRIPTOR_SET).read_bytes()
    return descriptor_pb2.FileDescriptorSet.FromString(raw)


@functools.cache
def descriptor_pool() -> DescriptorPool:
    pool = DescriptorPool()
    for file_proto in descriptor_set().file:
        pool.AddSerializedFile(file_proto.SerializeToString())
    return pool


@functools.cache
def _message_class(full_name: str) -> type:
    return message_factory.GetMessageClass(descriptor_pool().FindMessageTypeByName(full_name))


def check_message_bytes(full_name: str, payload: bytes) -> None:
    """Raise ValueError naming the problem when `payload` is not a valid `full_name` message."""
    check_parses(_message_class(full_name), payload)


def check_parses(message_class: type[Message], payload: bytes) -> None:
    """Raise ValueError naming the problem when `payload` is not a valid message of `message_class`.

    Besides what the upb parser refuses (truncation, bad UTF-8, impossible wire types), a declared
    field sent with a wire type its type cannot have is refused: upb keeps it as an unknown field,
    so the runner would silently see that field unset instead of the sender hearing of the mix-up.
    """
    try:
        message = message_class.FromString(payload)
    except DecodeError as e:
        raise ValueError(str(e) or "malformed protobuf bytes") from None
    # Fast path (every request and job args are checked): no unknown field at any depth means
    # no wrong wire type. DiscardUnknownFields is recursive and, like ByteSize, runs in upb's C
    # code; unknown fields count in ByteSize, so an unchanged size means there were none. The
    # walk below (UnknownFieldSet per message) cost ~4 us per call.
    size = message.ByteSize()
    message.DiscardUnknownFields()
    if message.ByteSize() == size:
        return
    problem = _wrong_wire_type(message_class.FromString(payload))
    if problem is not None:
        raise ValueError(problem)


def _wrong_wire_type(message: Message) -> str | None:
    """The first declared field, in `message` or a message inside it, that came with a wrong wire type."""
    declared = message.DESCRIPTOR.fields_by_number
    for unknown in UnknownFieldSet(message):
        field = declared.get(unknown.field_number)
        if field is not None:
            kind = descriptor_pb2.FieldDescriptorProto.Type.Name(field.type).removeprefix("TYPE_").lower()
            return (f"field {field.name} ({field.number}) of {message.DESCRIPTOR.full_name} has wire type "
                    f"{unknown.wire_type}, which a {kind} field cannot have")
    for child in _sub_messages(message):
        problem = _wrong_wire_type(child)
        if problem is not None:
            return problem
    return None


def _sub_messages(message: Message) -> Iterator[Message]:
    """The messages set inside `message`: singular and repeated message fields, and message map values."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                yield from value.values()
        elif field.is_repeated:
            yield from value
        else:
            yield value
