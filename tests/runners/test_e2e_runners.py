"""The runners wired into a real server: RunnerService listing, plugins, HTTP, gRPC and Docker jobs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.runners.docker_api import Engine
from jobworkerp.runners.plugins import proto_messages
from jobworkerp.testing.server import Client, ServerProcess, connect, run
from plugins import hello, sleep
from tests.runners.conftest import BROKEN_PLUGIN_DIR, PLUGIN_DIRS, ROOT, find_docker_host
from tests.runners.test_docker import wait_until_gone, wait_until_no_orphans

pytestmark = pytest.mark.timeout(120)

FAILED_ONCE = (data.ResultStatus.ERROR_AND_RETRY, data.ResultStatus.MAX_RETRY)  # no retry policy: MAX_RETRY
HTTP, GRPC, DOCKER = data.RunnerId(value=2), data.RunnerId(value=3), data.RunnerId(value=4)
DOCKER_HOST, _ = find_docker_host()
needs_docker = pytest.mark.usefixtures("docker_host")  # skipped without an engine; failed on CI


def _plugin_env(*dirs: Path) -> dict[str, str]:
    env = {"PLUGINS_RUNNER_DIR": ",".join(str(d) for d in dirs)}
    if DOCKER_HOST is not None:
        env["DOCKER_HOST"] = DOCKER_HOST
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with the hello and faulty plugins, plus a directory of broken plugins."""
    broken_extra = tmp_path_factory.mktemp("more-broken-plugins")
    (broken_extra / "syntax_error.py").write_text("def broken(:\n    pass\n")
    env = {**_plugin_env(*PLUGIN_DIRS, BROKEN_PLUGIN_DIR, broken_extra),
           "WORKER_CHANNELS": "single", "WORKER_CHANNEL_CONCURRENCIES": "1"}
    proc = ServerProcess(tmp_path_factory.mktemp("server"), env).start()
    yield proc
    assert proc.stop() == 0, proc.log()
    if DOCKER_HOST is not None:  # the static container went with its runner host, like every other
        engine = Engine(DOCKER_HOST)
        try:
            assert wait_until_no_orphans(engine) == []
        finally:
            engine.close()


async def runners_by_name(c: Client) -> dict[str, data.Runner]:
    return {r.data.name: r async for r in c.runner.find_list(svc.FindListRequest())}


async def direct(c: Client, wd: data.WorkerData, args: bytes, timeout_ms: int | None = None) -> data.JobResultData:
    """Create the worker as DIRECT and run one job; the job's result."""
    wd.response_type = data.ResponseType.DIRECT
    worker_id = (await c.worker.create(wd)).id
    response = await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=args, timeout=timeout_ms))
    assert response.result is not None
    return response.result.data


HELLO_SETTINGS = proto_messages(hello.SETTINGS_PROTO).HelloRunnerSettings
HELLO_ARGS = proto_messages(hello.ARGS_PROTO).HelloArgs
SLEEP_ARGS = proto_messages(sleep.ARGS_PROTO).SleepArgs


def faulty_args(action: str, arg: str = "") -> bytes:
    from tests.runners.plugins.faulty import ARGS_PROTO

    return proto_messages(ARGS_PROTO).FaultyArgs(action=action, arg=arg).SerializeToString()


# --- plugins ---------------------------------------------------------------------------------------

def test_plugins_are_listed_and_broken_ones_logged(server: ServerProcess) -> None:
    runners = run(_list(server.port))
    assert {"COMMAND", "HTTP_REQUEST", "GRPC_UNARY", "DOCKER", "hello", "faulty"} <= set(runners)
    hello = runners["hello"]
    assert hello.id.value > 1024
    assert hello.data.runner_type == data.RunnerType.PLUGIN
    assert "HelloRunnerSettings" in hello.data.runner_settings_proto
    assert "HelloArgs" in hello.data.job_args_proto
    assert not {"bad_proto", "forgotten"} & set(runners)
    assert runners["COMMAND"].id.value == 1  # a plugin could not take the built-in name
    log = server.log()
    assert "this plugin is broken on purpose" in log
    assert "crashes_on_import.py: skipped" in log
    assert "syntax_error.py: skipped" in log and "SyntaxError" in log
    assert server.alive()


async def _list(port: int) -> dict[str, data.Runner]:
    async with connect(port) as c:
        return await runners_by_name(c)


def test_hello_runs_through_direct(server: ServerProcess) -> None:
    async def scenario() -> data.JobResultData:
        async with connect(server.port) as c:
            hello_id = (await runners_by_name(c))["hello"].id
            wd = data.WorkerData(name="hello-direct", runner_id=hello_id,
                                 runner_settings=HELLO_SETTINGS(name="w").SerializeToString())
            return await direct(c, wd, HELLO_ARGS(arg="x").SerializeToString())

    result = run(scenario())
    assert result.status == data.ResultStatus.SUCCESS
    assert result.output.items == [b"SUCCESS: arg=x"]


def test_sleep_plugin_runs_a_job_and_its_timeout_ends_it(server: ServerProcess) -> None:
    """The `sleep` plugin the benchmarks use: a short sleep succeeds with its output item, and a
    sleep longer than the job's timeout is ended by the timeout (not left to run its course)."""
    async def scenario() -> tuple[data.Runner, data.JobResultData, data.JobResultData]:
        async with connect(server.port) as c:
            sleep_runner = (await runners_by_name(c))["sleep"]
            wd = data.WorkerData(name="sleep-direct", runner_id=sleep_runner.id, use_static=True)
            done = await direct(c, wd, SLEEP_ARGS(ms=5).SerializeToString())
            long_sleep = svc.JobRequest(worker_name="sleep-direct", args=SLEEP_ARGS(ms=600_000).SerializeToString(),
                                        timeout=500)
            cut = (await c.job.enqueue(long_sleep)).result
            assert cut is not None
            return sleep_runner, done, cut.data

    runner, done, cut = run(scenario())
    assert runner.data.runner_type == data.RunnerType.PLUGIN
    assert "SleepArgs" in runner.data.job_args_proto
    assert done.status == data.ResultStatus.SUCCESS
    assert done.output.items == [b"slept 5 ms"]
    assert cut.status in FAILED_ONCE and b"timed out" in cut.output.items[0]


def test_a_segfaulting_plugin_job_fails_only_itself(server: ServerProcess) -> None:
    async def scenario() -> tuple[data.JobResultData, data.JobResultData, data.JobResultData, data.JobResultData]:
        async with connect(server.port) as c:
            faulty_id = (await runners_by_name(c))["faulty"].id
            worker_id = (await c.worker.create(data.WorkerData(
                name="faulty-direct", runner_id=faulty_id, response_type=data.ResponseType.DIRECT))).id

            async def job(action: str, arg: str = "") -> data.JobResultData:
                response = await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=faulty_args(action, arg)))
                assert response.result is not None
                return response.result.data

            crashed, alongside, exited = await asyncio.gather(job("segfault"), job("ok", "alongside"), job("exit"))
            after = await job("ok", "after")
            return crashed, alongside, exited, after

    crashed, alongside, exited, after = run(scenario())
    assert crashed.status in FAILED_ONCE and b"SIGSEGV" in crashed.output.items[0]
    assert exited.status in FAILED_ONCE
    assert (alongside.status, alongside.output.items) == (data.ResultStatus.SUCCESS, [b"alongside"])
    assert (after.status, after.output.items) == (data.ResultStatus.SUCCESS, [b"after"])
    assert server.alive()


def test_plugin_load_failure_and_error_statuses(server: ServerProcess) -> None:
    from tests.runners.plugins.faulty import SETTINGS_PROTO

    fail_load = proto_messages(SETTINGS_PROTO).FaultySettings(fail_load=True).SerializeToString()

    async def scenario() -> tuple[data.JobResultData, data.JobResultData, data.JobResultData]:
        async with connect(server.port) as c:
            faulty_id = (await runners_by_name(c))["faulty"].id
            load = await direct(c, data.WorkerData(name="faulty-load", runner_id=faulty_id,
                                                   runner_settings=fail_load), faulty_args("ok"))
            fail = await direct(c, data.WorkerData(name="faulty-fail", runner_id=faulty_id), faulty_args("fail"))
            hang = await direct(c, data.WorkerData(name="faulty-hang", runner_id=faulty_id), faulty_args("hang"),
                                timeout_ms=1000)
            return load, fail, hang

    load, fail, hang = run(scenario())
    assert load.status == data.ResultStatus.FATAL_ERROR and b"load failed on request" in load.output.items[0]
    assert fail.status == data.ResultStatus.OTHER_ERROR and b"failed on request" in fail.output.items[0]
    assert hang.status in FAILED_ONCE and b"timed out" in hang.output.items[0]


def test_plugin_ids_are_stable_across_restarts(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path, _plugin_env(ROOT / "plugins")).start()
    try:
        before = run(_list(first.port))["hello"].id.value
    finally:
        assert first.stop() == 0, first.log()
    second = ServerProcess(tmp_path, _plugin_env(*PLUGIN_DIRS)).start()  # same database, one more plugin
    try:
        after = run(_list(second.port))
    finally:
        assert second.stop() == 0, second.log()
    assert after["hello"].id.value == before
    assert after["faulty"].id.value not in (before, 0)


# --- HTTP_REQUEST and GRPC_UNARY through the server ----------------------------------------------------

def test_http_request_worker(server: ServerProcess, http_server: str) -> None:
    def args(path: str) -> bytes:
        return bytes(runner_pb.HttpRequestArgs(method="GET", path=path, queries=[
            runner_pb.HttpRequestArgsKeyValue(key="q", value="1")]))

    async def scenario() -> tuple[data.JobResultData, data.JobResultData, data.JobResultData]:
        async with connect(server.port) as c:
            settings = bytes(runner_pb.HttpRequestRunnerSettings(base_url=http_server))
            ok = await direct(c, data.WorkerData(name="http-ok", runner_id=HTTP, runner_settings=settings),
                              args("/hello"))
            missing = await direct(c, data.WorkerData(name="http-404", runner_id=HTTP, runner_settings=settings),
                                   args("/status/404"))
            down = await direct(c, data.WorkerData(name="http-503", runner_id=HTTP, runner_settings=settings),
                                args("/status/503"))
            return ok, missing, down

    ok, missing, down = run(scenario())
    assert ok.status == data.ResultStatus.SUCCESS
    parsed = runner_pb.HttpRequestResult.parse(ok.output.items[0])
    assert parsed.status_code == 200 and json.loads(parsed.content)["query"] == [["q", "1"]]
    assert missing.status == data.ResultStatus.SUCCESS
    assert runner_pb.HttpRequestResult.parse(missing.output.items[0]).status_code == 404
    assert down.status in FAILED_ONCE and b"HTTP 503" in down.output.items[0]


def test_grpc_unary_worker_calls_our_own_count(server: ServerProcess) -> None:
    async def scenario() -> tuple[int, data.JobResultData, data.JobResultData]:
        async with connect(server.port) as c:
            url = f"http://127.0.0.1:{server.port}"
            count = await direct(c, data.WorkerData(
                name="grpc-count", runner_id=GRPC,
                runner_settings=bytes(runner_pb.GrpcUnaryRunnerSettings(
                    url=url, path="jobworkerp.service.RunnerService/Count"))), bytes(svc.CountCondition()))
            unknown = await direct(c, data.WorkerData(
                name="grpc-unknown", runner_id=GRPC,
                runner_settings=bytes(runner_pb.GrpcUnaryRunnerSettings(
                    url=url, path="/jobworkerp.service.RunnerService/Nope"))), b"")
            total = (await c.runner.count(svc.CountCondition())).total
            return total, count, unknown

    total, count, unknown = run(scenario())
    assert count.status == data.ResultStatus.SUCCESS
    assert svc.CountResponse.parse(count.output.items[0]).total == total
    assert unknown.status == data.ResultStatus.FATAL_ERROR
    assert b"UNIMPLEMENTED" in unknown.output.items[0]


# --- DOCKER through the server --------------------------------------------------------------------

DOCKER_SETTINGS = bytes(runner_pb.DockerRunnerSettings(from_image="local/busybox", tag="test"))


def docker_args(script: str) -> bytes:
    return bytes(runner_pb.DockerArgs(cmd=["sh", "-c", script]))


@needs_docker
def test_docker_echo_and_failing_exit(server: ServerProcess) -> None:
    async def scenario() -> tuple[data.JobResultData, data.JobResultData]:
        async with connect(server.port) as c:
            echo = await direct(c, data.WorkerData(name="docker-echo", runner_id=DOCKER,
                                                   runner_settings=DOCKER_SETTINGS), docker_args("echo hi"))
            fail = await direct(c, data.WorkerData(name="docker-exit3", runner_id=DOCKER,
                                                   runner_settings=DOCKER_SETTINGS),
                                docker_args("echo out; echo went wrong >&2; exit 3"))
            return echo, fail

    echo, fail = run(scenario())
    assert (echo.status, echo.output.items) == (data.ResultStatus.SUCCESS, [b"hi\n"])
    assert fail.status in FAILED_ONCE
    assert b"exited with code 3" in fail.output.items[0] and b"went wrong" in fail.output.items[0]


@needs_docker
def test_docker_job_past_its_timeout_leaves_no_container(server: ServerProcess, engine: Engine) -> None:
    token = uuid.uuid4().hex

    async def scenario() -> data.JobResultData:
        async with connect(server.port) as c:
            return await direct(c, data.WorkerData(name="docker-timeout", runner_id=DOCKER,
                                                   runner_settings=DOCKER_SETTINGS),
                                docker_args(f"echo started; sleep 60; : {token}"), timeout_ms=3000)

    result = run(scenario())
    assert result.status in FAILED_ONCE and b"timed out" in result.output.items[0]
    assert wait_until_gone(engine, token) == []


@needs_docker
def test_docker_use_static_runs_jobs_in_one_container(server: ServerProcess) -> None:
    async def scenario() -> tuple[data.JobResultData, data.JobResultData]:
        async with connect(server.port) as c:
            # Channel "single" has one runner host, so both jobs meet the same static runner.
            worker_id = (await c.worker.create(data.WorkerData(
                name="docker-static", runner_id=DOCKER, runner_settings=DOCKER_SETTINGS, use_static=True,
                response_type=data.ResponseType.DIRECT, channel="single"))).id
            results = []
            for script in ("hostname; echo kept > /tmp/mark", "hostname; cat /tmp/mark"):
                response = await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=docker_args(script)))
                assert response.result is not None
                results.append(response.result.data)
            return results[0], results[1]

    first, second = run(scenario())
    assert first.status == second.status == data.ResultStatus.SUCCESS
    assert first.output.items[0].split()[0] == second.output.items[0].split()[0]  # same container
    assert second.output.items[0].split()[1] == b"kept"
