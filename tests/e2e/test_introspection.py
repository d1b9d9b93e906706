"""Health and reflection the way grpcurl uses them: list the services through reflection, fetch
the file that declares a service, build its request message from that file alone, and call
the method -- against a real server, over a socket. Then grpcurl itself, where it is installed
(CI installs it: .ci/run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpclib.client import Channel, UnaryUnaryMethod
from grpclib.reflection.v1 import reflection_grpc as v1_grpc
from grpclib.reflection.v1 import reflection_pb2 as v1_pb2
from grpclib.reflection.v1alpha import reflection_grpc as v1alpha_grpc
from grpclib.reflection.v1alpha import reflection_pb2 as v1alpha_pb2

from jobworkerp.testing.server import ServerProcess, connect, run

pytestmark = pytest.mark.timeout(120)

HEALTH = "grpc.health.v1.Health"
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REFLECTION_V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
JOBWORKERP_SERVICES = [f"jobworkerp.service.{name}" for name in (
    "RunnerService", "WorkerService", "JobService", "JobStatusService", "JobRestoreService", "JobResultService")]
# Both reflection versions: grpcurl up to 1.8 speaks only v1alpha, later ones v1 first.
VERSIONS = [(v1_grpc.ServerReflectionStub, v1_pb2), (v1alpha_grpc.ServerReflectionStub, v1alpha_pb2)]


async def _ask(channel: Channel, stub: Any, pb: Any, **request: Any) -> Any:
    async with stub(channel).ServerReflectionInfo.open() as stream:
        await stream.send_message(pb.ServerReflectionRequest(**request), end=True)
        return await stream.recv_message()


async def _files_declaring(channel: Channel, stub: Any, pb: Any,
                          symbol: str) -> list[descriptor_pb2.FileDescriptorProto]:
    """The file that declares `symbol`, and the files it imports, as a client resolves them."""
    reply = await _ask(channel, stub, pb, file_containing_symbol=symbol)
    assert reply.WhichOneof("message_response") == "file_descriptor_response", reply
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
             for raw in reply.file_descriptor_response.file_descriptor_proto]
    missing = [dep for f in files for dep in f.dependency if dep not in {g.name for g in files}]
    for name in missing:
        dep = await _ask(channel, stub, pb, file_by_filename=name)
        files += [descriptor_pb2.FileDescriptorProto.FromString(raw)
                  for raw in dep.file_descriptor_response.file_descriptor_proto]
    return files


@pytest.mark.parametrize(("stub", "pb"), VERSIONS, ids=["v1", "v1alpha"])
def test_reflection_lists_health_reflection_and_our_services(server: ServerProcess, stub: Any, pb: Any) -> None:
    async def scenario() -> list[str]:
        async with connect(server.port) as c:
            reply = await _ask(c.channel, stub, pb, list_services="")
            return [s.name for s in reply.list_services_response.service]

    services = run(scenario())
    for name in [HEALTH, REFLECTION_V1, REFLECTION_V1ALPHA, *JOBWORKERP_SERVICES, "jobworkerp.ext.BulkJobService",
                 "jobworkerp.ext.JobStreamService", "jobworkerp.ext.ChannelInfoService"]:
        assert name in services


@pytest.mark.parametrize(("stub", "pb"), VERSIONS, ids=["v1", "v1alpha"])
def test_health_check_from_reflected_descriptors_answers_serving(server: ServerProcess, stub: Any, pb: Any) -> None:
    """What `grpcurl -plaintext HOST:PORT grpc.health.v1.Health/Check` does: nothing known in
    advance but the method's name."""

    async def scenario() -> tuple[str, list[str], list[str]]:
        async with connect(server.port) as c:
            pool = DescriptorPool()
            for file in await _files_declaring(c.channel, stub, pb, HEALTH):
                pool.Add(file)
            check = pool.FindServiceByName(HEALTH).FindMethodByName("Check")
            request_class = message_factory.GetMessageClass(check.input_type)
            reply_class = message_factory.GetMessageClass(check.output_type)
            reply = await UnaryUnaryMethod(c.channel, f"/{HEALTH}/Check", request_class, reply_class)(request_class())
            status = check.output_type.fields_by_name["status"].enum_type.values_by_number[reply.status].name
            described = []
            for reflection in (REFLECTION_V1, REFLECTION_V1ALPHA):
                reflection_pool = DescriptorPool()
                for file in await _files_declaring(c.channel, stub, pb, reflection):
                    reflection_pool.Add(file)
                described += [m.name for m in reflection_pool.FindServiceByName(reflection).methods]
            return status, [m.name for m in pool.FindServiceByName(HEALTH).methods], described

    status, health_methods, reflection_methods = run(scenario())
    assert status == "SERVING"
    assert health_methods == ["Check", "Watch"]
    assert reflection_methods == ["ServerReflectionInfo", "ServerReflectionInfo"]


def _grpcurl() -> str:
    """grpcurl on PATH or beside this Python (pip installs it there); CI must have it."""
    found = shutil.which("grpcurl") or shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("grpcurl is not installed (the dev extra installs it)")
        pytest.skip("grpcurl is not installed (the dev extra installs it)")
    return found


def test_grpcurl_health_check_list_and_describe(server: ServerProcess) -> None:
    grpcurl = _grpcurl()
    target = f"127.0.0.1:{server.port}"

    def call(*args: str) -> str:
        done = subprocess.run([grpcurl, "-plaintext", "-max-time", "30", *args], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert '"status": "SERVING"' in call(target, f"{HEALTH}/Check")
    listed = call(target, "list").split()
    for name in [HEALTH, REFLECTION_V1ALPHA, *JOBWORKERP_SERVICES]:
        assert name in listed
    assert "rpc Check" in call(target, "describe", HEALTH)
    assert "rpc ServerReflectionInfo" in call(target, "describe", REFLECTION_V1ALPHA)
