"""ChannelInfoService.FindAll over real gRPC against an all-in-one server (Standalone, and
Scalable, where the process answers from the report it publishes to Redis): the
runner hosts a plain plugin's job (an exclusive host) and a COMMAND job (the shared host) keep,
the jobs running, and a runner host killed with SIGKILL under a job counted with cause `signal`."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobworkerp.proto.jobworkerp import data, ext
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.runners.plugins import proto_messages
from jobworkerp.testing.server import ServerProcess, connect, run
from plugins import hello
from tests.e2e.servers import STORAGE_MODES, server_in_mode
from tests.e2e.test_server_kill import _children, _wait_for

pytestmark = pytest.mark.timeout(300)
DEFAULT = "__default_job_channel__"
ROOT = Path(__file__).resolve().parents[2]
HANG_S = 120.0  # hang guard only: no timing is asserted
HELLO_SETTINGS = proto_messages(hello.SETTINGS_PROTO).HelloRunnerSettings
HELLO_ARGS = proto_messages(hello.ARGS_PROTO).HelloArgs


@pytest.fixture(scope="module", params=STORAGE_MODES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"PLUGINS_RUNNER_DIR": str(ROOT / "plugins"), "WORKER_DEFAULT_CONCURRENCY": "2",
           "WORKER_CHANNELS": "other", "WORKER_CHANNEL_CONCURRENCIES": "3"}
    with server_in_mode(request.param, tmp_path_factory.mktemp(f"channel-info-{request.param}"), env) as proc:
        yield proc


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


async def find_all(port: int) -> dict[str, ext.ChannelInfo]:
    async with connect(port) as c:
        reply = await ext.ChannelInfoServiceStub(c.channel).find_all(data.Empty())
    return {info.name: info for info in reply.channels}


async def wait_for_info(port: int, what: str, ok: Callable[[dict[str, ext.ChannelInfo]], bool]
                        ) -> dict[str, ext.ChannelInfo]:
    deadline = time.monotonic() + HANG_S
    while True:
        infos = await find_all(port)
        if ok(infos):
            return infos
        if time.monotonic() > deadline:
            raise AssertionError(f"hang guard: {what} after {HANG_S}s: {infos}")
        await asyncio.sleep(0.1)


def test_every_channel_is_listed_with_its_concurrency(server: ServerProcess) -> None:
    infos = run(find_all(server.port))
    assert list(infos) == [DEFAULT, "other"]
    assert (infos[DEFAULT].concurrency, infos["other"].concurrency) == (2, 3)
    assert all(info.worker_processes == 1 and info.running == 0 for info in infos.values())


def test_a_plugin_job_keeps_an_exclusive_host_and_a_command_job_the_shared_one(server: ServerProcess) -> None:
    async def scenario() -> dict[str, ext.ChannelInfo]:
        async with connect(server.port) as c:
            runners = {r.data.name: r async for r in c.runner.find_list(svc.FindListRequest())}
            hello_worker = (await c.worker.create(data.WorkerData(
                name="ci-hello", runner_id=runners["hello"].id, response_type=data.ResponseType.DIRECT,
                runner_settings=HELLO_SETTINGS(name="w").SerializeToString()))).id
            reply = await c.job.enqueue(svc.JobRequest(worker_id=hello_worker,
                                                       args=HELLO_ARGS(arg="x").SerializeToString()))
            assert reply.result is not None and reply.result.data.status == data.ResultStatus.SUCCESS
            echo = (await c.worker.create(data.WorkerData(
                name="ci-echo", runner_id=data.RunnerId(value=1), response_type=data.ResponseType.DIRECT,
                runner_settings=bytes(runner_pb.CommandRunnerSettings(name="echo"))))).id
            reply = await c.job.enqueue(svc.JobRequest(worker_id=echo, args=bytes(runner_pb.CommandArgs(args=["hi"]))))
            assert reply.result is not None and reply.result.data.status == data.ResultStatus.SUCCESS
        return await wait_for_info(server.port, "both hosts reported",
                                   lambda infos: infos[DEFAULT].exclusive_hosts >= 1
                                   and infos[DEFAULT].shared_hosts == 1)

    infos = run(scenario(), timeout=HANG_S * 2)
    assert infos["other"].exclusive_hosts == infos["other"].shared_hosts == 0


def test_a_runner_host_killed_under_a_job_is_counted_as_a_signal_restart(server: ServerProcess) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    found: dict[str, int] = {}

    def host_running_the_sleep() -> bool:
        for host in _children(pid):
            if any(_cmdline(child) == ["sleep", "602"] for child in _children(host)):
                found["host"] = host
                return True
        return False

    async def scenario() -> tuple[dict[str, ext.ChannelInfo], data.JobResult, dict[str, ext.ChannelInfo]]:
        async with connect(server.port) as c:
            worker = (await c.worker.create(data.WorkerData(
                name="ci-sleep", runner_id=data.RunnerId(value=1), response_type=data.ResponseType.LISTEN_AFTER,
                runner_settings=bytes(runner_pb.CommandRunnerSettings(name="sleep")),
                store_success=True, store_failure=True))).id
            job = (await c.job.enqueue(svc.JobRequest(worker_id=worker,
                                                      args=bytes(runner_pb.CommandArgs(args=["602"]))))).id
            await asyncio.to_thread(_wait_for, "the job's sleep never ran", host_running_the_sleep)
            while_running = await wait_for_info(server.port, "the job counted as running",
                                                lambda infos: infos[DEFAULT].running == 1)
            os.kill(found["host"], signal.SIGKILL)
            result = await c.job_result.listen(svc.ListenRequest(job_id=job, worker_id=worker))
        after = await wait_for_info(server.port, "the killed host counted",
                                    lambda infos: infos[DEFAULT].host_restarts.get("signal") == 1
                                    and infos[DEFAULT].running == 0)
        return while_running, result, after

    while_running, result, after = run(scenario(), timeout=HANG_S * 2)
    assert while_running[DEFAULT].host_restarts.get("signal") is None
    assert result.data.status == data.ResultStatus.MAX_RETRY  # HostCrashed, and no retry policy
    assert after[DEFAULT].shared_hosts <= 1  # replaced on its next call
