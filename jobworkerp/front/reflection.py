"""Descriptors of our .proto files for gRPC server reflection (so grpcurl needs no proto files).

`just proto` writes the FileDescriptorSet next to the generated code; it is committed with it.
"""

from __future__ import annotations

import functools
from importlib import resources

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor_pool import DescriptorPool

DESCRIPTOR_SET = "descriptor_set.binpb"


@functools.cache
def descriptor_pool() -> DescriptorPool:
    raw = resources.files("jobworkerp.proto").joinpath(DESCRIPTOR_SET).read_bytes()
    fds = descriptor_pb2.FileDescriptorSet.FromString(raw)
    pool = DescriptorPool()
    for file_proto in fds.file:
        pool.AddSerializedFile(file_proto.SerializeToString())
    return pool
