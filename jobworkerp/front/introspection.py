"""gRPC health and server reflection, described by reflection like every other service.

Why: grpcurl and the tools built on it find a method only through reflection. grpclib's
`ServerReflection.extend` lists just the services handed to it, and describes files only from
the pool it is given; with our own descriptors alone, `grpcurl ... grpc.health.v1.Health/Check`
failed with "target server does not expose service grpc.health.v1.Health". Here reflection
lists health and both reflection versions (v1; v1alpha, which grpcurl up to 1.8 speaks) besides
our services, and describes them from a pool that holds their .proto files too. It builds the
two reflection services itself, with what `extend` uses (grpclib's v1alpha class and
`_service_name`, private names of the pinned grpclib 0.4.9), to list them in their own answer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from google.protobuf.descriptor_pool import DescriptorPool
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.health.service import Health
from grpclib.health.v1 import health_pb2
from grpclib.reflection._deprecated import ServerReflection as ServerReflectionV1Alpha
from grpclib.reflection.service import ServerReflection
from grpclib.reflection.v1 import reflection_pb2 as reflection_v1_pb2
from grpclib.reflection.v1alpha import reflection_pb2 as reflection_v1alpha_pb2
from grpclib.utils import _service_name

from jobworkerp.descriptors import descriptor_set

if TYPE_CHECKING:
    from grpclib._typing import IServable


@functools.cache
def reflection_pool() -> DescriptorPool:
    """Our .proto files plus those of health and reflection, for reflection's file requests.

    A pool of its own: the strict request parser's pool (descriptors.py) has no use for them."""
    pool = DescriptorPool()
    for file_proto in descriptor_set().file:
        pool.AddSerializedFile(file_proto.SerializeToString())
    for module in (health_pb2, reflection_v1_pb2, reflection_v1alpha_pb2):
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    return pool


class _Replayed:
    """A server stream whose request was already read: `recv_message` hands it over once more."""

    def __init__(self, stream: Any, request: Any) -> None:
        self._stream = stream
        self._request = request

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._stream, attribute)

    async def recv_message(self) -> Any:
        request, self._request = self._request, None
        return request


class ServerHealth(Health):
    """grpclib's health service (the whole server, service '', is SERVING while it answers),
    except that Check of a service it has no status for says so: grpclib answers NOT_FOUND with
    no message, and every refusal here names what was wrong."""

    async def Check(self, stream: Any) -> None:
        request = await stream.recv_message()
        if request is not None and request.service not in self._checks:
            raise GRPCError(Status.NOT_FOUND, f"service: no health status for {request.service!r}; "
                                              "'' asks for the whole server")
        await super().Check(cast(Any, _Replayed(stream, request)))


def with_health_and_reflection(services: Sequence[IServable]) -> list[IServable]:
    """`services`, gRPC health, and reflection (v1 and v1alpha) listing and describing all of them."""
    health = ServerHealth()
    served: list[IServable] = [*services, health]
    names = [_service_name(service) for service in served]
    names += [reflection_v1_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name,
              reflection_v1alpha_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name]
    pool = reflection_pool()
    return [*served, ServerReflection(_service_names=names, _pool=pool),
            ServerReflectionV1Alpha(_service_names=names, _pool=pool)]
