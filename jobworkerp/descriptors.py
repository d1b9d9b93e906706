"""Protobuf descriptors of our .proto files, from the FileDescriptorSet `just proto` commits.

Used for gRPC server reflection (so grpcurl needs no proto files) and for strict parsing:
betterproto2 accepts truncated or malformed bytes silently, while the upb parser rejects them,
so worker settings are checked with these descriptors before they are stored.
"""

from __future__ import annotations

import functools
from importlib import resources

from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import DecodeError

DESCRIPTOR_SET = "descriptor_set.binpb"


@functools.cache
def descriptor_pool() -> DescriptorPool:
    raw = resources.files("jobworkerp.proto").joinpath(DESCRIPTOR_SET).read_bytes()
    fds = descriptor_pb2.FileDescriptorSet.FromString(raw)
    pool = DescriptorPool()
    for file_proto in fds.file:
        pool.AddSerializedFile(file_proto.SerializeToString())
    return pool


@functools.cache
def _message_class(full_name: str) -> type:
    return message_factory.GetMessageClass(descriptor_pool().FindMessageTypeByName(full_name))


def check_message_bytes(full_name: str, payload: bytes) -> None:
    """Raise ValueError naming the problem when `payload` is not a valid `full_name` message."""
    try:
        _message_class(full_name).FromString(payload)
    except DecodeError as e:
        raise ValueError(str(e) or "malformed protobuf bytes") from None
