"""The runner policy through a real server: what a client holding the token may not make a job do
to the host (runners/policy.py). Standalone: the checks do not depend on the storage mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from grpclib.const import Status

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, ServerProcess, connect, run
from tests.e2e.refusals import status_of
from tests.runners.conftest import CI_DOCKER_SOCKET, TEST_IMAGE, docker_unavailable, find_docker_host

pytestmark = pytest.mark.timeout(120)

COMMAND, HTTP, DOCKER = data.RunnerId(value=1), data.RunnerId(value=2), data.RunnerId(value=4)
DOCKER_HOST, WHY_NO_DOCKER = find_docker_host()
BUSYBOX = runner_pb.DockerRunnerSettings(from_image="local/busybox", tag="test")
LIMITS_SCRIPT = ("cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
                 "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max")


@pytest.fixture
def docker() -> None:
    """The tests that run containers: skipped without an engine, failed on CI (CI=true)."""
    if DOCKER_HOST is None:
        docker_unavailable(WHY_NO_DOCKER)


def _docker_env() -> dict[str, str]:
    return {"DOCKER_HOST": DOCKER_HOST} if DOCKER_HOST is not None else {}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("binds")
    allowed, outside = root / "allowed", root / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "marker").write_text("inside\n")
    (outside / "marker").write_text("host secret\n")
    (allowed / "escape").symlink_to(outside)
    return {"allowed": allowed, "outside": outside}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, dirs: dict[str, Path]) -> Iterator[ServerProcess]:
    env = {**_docker_env(), "DOCKER_ALLOWED_BINDS": str(dirs["allowed"]),
           "DOCKER_ALLOWED_IMAGES": "local/busybox:*", "DOCKER_MEMORY_LIMIT_MB": "256", "DOCKER_PIDS_LIMIT": "64",
           "COMMAND_ALLOWLIST": "echo", "WORKER_DEFAULT_CONCURRENCY": "2"}
    proc = ServerProcess(tmp_path_factory.mktemp("policy-server"), env).start()
    yield proc
    assert proc.stop() == 0, proc.log()




def docker_worker(name: str, settings: runner_pb.DockerRunnerSettings = BUSYBOX) -> data.WorkerData:
    return data.WorkerData(name=name, runner_id=DOCKER, runner_settings=bytes(settings),
                           response_type=data.ResponseType.DIRECT)


def command_worker(name: str, command: str) -> data.WorkerData:
    return data.WorkerData(name=name, runner_id=COMMAND, response_type=data.ResponseType.DIRECT,
                           runner_settings=bytes(runner_pb.CommandRunnerSettings(name=command)))


async def direct_job(c: Client, worker_name: str, args: bytes) -> data.JobResultData:
    response = await c.job.enqueue(svc.JobRequest(worker_name=worker_name, args=args))
    assert response.result is not None
    return response.result.data


# --- DOCKER bind mounts ---------------------------------------------------------------------------

def test_bind_outside_the_allowlist_is_refused_at_worker_create(server: ServerProcess, dirs: dict[str, Path]) -> None:
    for i, host_path in enumerate([dirs["outside"], dirs["allowed"] / "escape", dirs["allowed"] / ".." / "outside",
                                   Path("/")]):
        settings = runner_pb.DockerRunnerSettings(from_image="local/busybox", tag="test", volumes=[f"{host_path}:/h"])
        status, message = status_of(server.port,
                                    lambda c, s=settings, i=i: c.worker.create(docker_worker(f"bad{i}", s)))
        assert status == Status.INVALID_ARGUMENT
        assert message.startswith("runner_settings.volumes[0]: bind mount of host path"), message


def test_bind_outside_the_allowlist_is_refused_at_enqueue(server: ServerProcess, dirs: dict[str, Path]) -> None:
    run(_create(server.port, docker_worker("docker-binds")))
    for volumes in ([f"{dirs['outside']}:/host:ro"], ["/scratch", "/:/host"],
                    [f"{CI_DOCKER_SOCKET}:/var/run/docker.sock"], ["someones-volume:/v"]):
        args = bytes(runner_pb.DockerArgs(cmd=["cat", "/host/marker"], volumes=volumes))
        status, message = status_of(server.port,
                                  lambda c, a=args: c.job.enqueue(svc.JobRequest(worker_name="docker-binds", args=a)))
        assert status == Status.INVALID_ARGUMENT
        assert message.startswith(f"args.volumes[{len(volumes) - 1}]: "), message


@pytest.mark.usefixtures("docker")
def test_bind_inside_the_allowlist_works(server: ServerProcess, dirs: dict[str, Path]) -> None:
    async def scenario() -> data.JobResultData:
        async with connect(server.port) as c:
            await c.worker.create(docker_worker("docker-allowed-bind"))
            args = runner_pb.DockerArgs(cmd=["cat", "/h/marker"], volumes=[f"{dirs['allowed']}:/h:ro"])
            return await direct_job(c, "docker-allowed-bind", bytes(args))

    result = run(scenario())
    assert (result.status, result.output.items) == (data.ResultStatus.SUCCESS, [b"inside\n"])


# --- DOCKER images and limits --------------------------------------------------------------------

def test_image_outside_the_allowlist_is_refused(server: ServerProcess) -> None:
    settings = runner_pb.DockerRunnerSettings(from_image="busybox", tag="latest")
    status, message = status_of(server.port, lambda c: c.worker.create(docker_worker("docker-hub", settings)))
    assert status == Status.INVALID_ARGUMENT and message.startswith("runner_settings.from_image: image"), message
    run(_create(server.port, docker_worker("docker-images")))
    args = bytes(runner_pb.DockerArgs(image="alpine:3", cmd=["true"]))
    status, message = status_of(server.port,
                              lambda c: c.job.enqueue(svc.JobRequest(worker_name="docker-images", args=args)))
    assert status == Status.INVALID_ARGUMENT and message.startswith("args.image: image 'alpine:3'"), message


@pytest.mark.usefixtures("docker")
def test_containers_run_with_the_memory_and_pids_limits(server: ServerProcess) -> None:
    async def scenario() -> data.JobResultData:
        async with connect(server.port) as c:
            await c.worker.create(docker_worker("docker-limits"))
            args = runner_pb.DockerArgs(image=TEST_IMAGE, cmd=["sh", "-c", LIMITS_SCRIPT])
            return await direct_job(c, "docker-limits", bytes(args))

    result = run(scenario())
    assert result.status == data.ResultStatus.SUCCESS, result.output.items
    assert result.output.items[0].split() == [str(256 * 1024 * 1024).encode(), b"64"]


# --- COMMAND ------------------------------------------------------------------------------------------

def test_command_off_the_allowlist_is_refused_and_listed_one_runs(server: ServerProcess) -> None:
    status, message = status_of(server.port, lambda c: c.worker.create(command_worker("cat", "cat")))
    assert status == Status.INVALID_ARGUMENT
    assert message.startswith("runner_settings.name: 'cat' is not an allowed executable"), message

    async def echo() -> data.JobResultData:
        async with connect(server.port) as c:
            await c.worker.create(command_worker("echo", "echo"))
            return await direct_job(c, "echo", bytes(runner_pb.CommandArgs(args=["allowed"])))

    result = run(echo())
    assert (result.status, result.output.items) == (data.ResultStatus.SUCCESS, [b"allowed\n"])


async def _create(port: int, wd: data.WorkerData) -> int:
    async with connect(port) as c:
        return (await c.worker.create(wd)).id.value


# --- a policy tightened after the workers were stored ----------------------------------------------------

def test_workers_stored_before_the_policy_are_refused_after_it(tmp_path: Path) -> None:
    """A server without a policy stores a DOCKER worker, an HTTP worker and a COMMAND `cat`; the
    same database served with RUNNERS_ENABLED=COMMAND and COMMAND_ALLOWLIST=echo refuses their
    jobs, an update that keeps them as they are, and a new DOCKER worker."""
    before = ServerProcess(tmp_path, _docker_env()).start()
    try:
        run(_create(before.port, docker_worker("old-docker")))
        run(_create(before.port, command_worker("old-cat", "cat")))
        run(_create(before.port, data.WorkerData(
            name="old-http", runner_id=HTTP,
            runner_settings=bytes(runner_pb.HttpRequestRunnerSettings(base_url="http://127.0.0.1:1")))))
    finally:
        assert before.stop() == 0, before.log()

    after = ServerProcess(tmp_path, {**_docker_env(), "RUNNERS_ENABLED": "COMMAND",
                                     "COMMAND_ALLOWLIST": "echo"}, name="after").start()
    try:
        docker_args = bytes(runner_pb.DockerArgs(cmd=["true"]))
        for worker_name, args, field, text in [
            ("old-docker", docker_args, "worker.runner_id", "runner DOCKER is disabled on this server"),
            ("old-http", bytes(runner_pb.HttpRequestArgs(method="GET", path="/")), "worker.runner_id",
             "runner HTTP_REQUEST is disabled"),
            ("old-cat", bytes(runner_pb.CommandArgs(args=["/etc/hostname"])), "worker.runner_settings.name",
             "'cat' is not an allowed executable"),
        ]:
            status, message = status_of(after.port, lambda c, w=worker_name, a=args: c.job.enqueue(
                svc.JobRequest(worker_name=w, args=a)))
            assert status == Status.INVALID_ARGUMENT and message.startswith(f"{field}: {text}"), message

        async def update_cat(c: Client) -> None:
            stored = await c.worker.find_by_name(svc.WorkerNameRequest(name="old-cat"))
            await c.worker.update(stored.data)

        status, message = status_of(after.port, update_cat)
        assert status == Status.INVALID_ARGUMENT and message.startswith("runner_settings.name: 'cat'"), message
        status, message = status_of(after.port, lambda c: c.worker.create(docker_worker("new-docker")))
        assert status == Status.INVALID_ARGUMENT and message.startswith("runner_id: runner DOCKER is disabled"), message
    finally:
        assert after.stop() == 0, after.log()
