"""DOCKER runner: pure helpers always; the runner itself against a real engine (skipped without one, failed on CI)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from jobworkerp.proto.jobworkerp.data import ResultStatus
from jobworkerp.proto.jobworkerp.runner import DockerArgs, DockerRunnerSettings
from jobworkerp.runners.base import OtherError, RetryableError, RunnerLoadError
from jobworkerp.runners.docker import DockerRunner
from jobworkerp.runners.docker_api import Demuxer, Engine, engine_transport
from jobworkerp.runners.docker_config import ImageSource, container_config, image_ref
from jobworkerp.runners.docker_watchdog import NODE_LABEL, OWNER_LABEL, PID_LABEL, PID_START_LABEL, _process_alive
from jobworkerp.runners.output_limit import CappedBuffer, OutputTooLarge
from tests.runners.conftest import TEST_IMAGE

pytestmark = pytest.mark.timeout(60)
SETTINGS = DockerRunnerSettings(from_image="local/busybox", tag="test")


# --- helpers (no engine) ---------------------------------------------------------------------

STREAM = b"\x02\0\0\0\0\0\0\x05oops\n\x01\0\0\0\0\0\0\x03hi\n\x01\0\0\0\0\0\0\x02!\n"


def test_demux_splits_stdout_and_stderr() -> None:
    whole = Demuxer(CappedBuffer(1024, "stdout"), 1024)
    whole.feed(STREAM)
    assert (bytes(whole.stdout.data), whole.stderr) == (b"hi\n!\n", b"oops\n")
    bytewise = Demuxer(CappedBuffer(1024, "stdout"), 1024)  # frames split anywhere, headers included
    for i in range(len(STREAM)):
        bytewise.feed(STREAM[i:i + 1])
    assert (bytes(bytewise.stdout.data), bytewise.stderr) == (b"hi\n!\n", b"oops\n")


def test_demux_stops_at_the_output_limit_and_keeps_the_tail_of_stderr() -> None:
    capped = Demuxer(CappedBuffer(4, "the stdout of a container"), 3)
    capped.feed(STREAM[:13])  # stderr "oops\n": its last 3 bytes are kept
    assert capped.stderr == b"ps\n"
    with pytest.raises(OutputTooLarge, match="JOB_OUTPUT_MAX_BYTES \\(4 bytes\\)"):
        capped.feed(STREAM[13:])  # stdout "hi\n!\n" is 5 bytes


def test_image_ref_and_source() -> None:
    assert image_ref("busybox", "1.36") == "busybox:1.36"
    assert image_ref("localhost:5000/busybox", "t") == "localhost:5000/busybox:t"
    assert image_ref("busybox:1.36", "other") == "busybox:1.36"
    assert image_ref("busybox", None) == "busybox"
    source = ImageSource.from_settings(DockerRunnerSettings(from_image="busybox", tag="1", platform="linux/amd64"))
    assert source.ref == "busybox:1"
    assert source.pull == {"fromImage": "busybox", "tag": "1", "platform": "linux/amd64"}
    assert ImageSource.from_settings(DockerRunnerSettings()).ref is None
    with pytest.raises(ValueError, match="repo"):
        ImageSource.from_settings(DockerRunnerSettings(from_src="http://x/rootfs.tar"))


def test_container_config_merges_settings_and_args() -> None:
    settings = DockerRunnerSettings(env=["A=1"], volumes=["/host:/data:ro"], working_dir="/w", entrypoint=["sh"])
    args = DockerArgs(cmd=["-c", "true"], env=["B=2"], volumes=["/scratch"], exposed_ports=["80"], user="1000")
    config = container_config(settings, args, "img", {"l": "v"})
    assert config["Env"] == ["A=1", "B=2"]
    assert config["HostConfig"] == {"Binds": ["/host:/data:ro"]}
    assert config["Volumes"] == {"/scratch": {}}
    assert config["WorkingDir"] == "/w"
    assert config["Entrypoint"] == ["sh"]
    assert config["Cmd"] == ["-c", "true"]
    assert config["ExposedPorts"] == {"80/tcp": {}}
    assert config["User"] == "1000"
    assert config["Labels"] == {"l": "v"}


def test_docker_host_forms() -> None:
    assert engine_transport("unix:///run/d.sock")[1] == "http://docker"
    assert engine_transport("/run/d.sock")[1] == "http://docker"
    assert engine_transport("tcp://10.0.0.1:2375")[1] == "http://10.0.0.1:2375"
    with pytest.raises(ValueError):
        engine_transport("npipe:////./pipe/docker_engine")


def test_unreachable_engine_fails_at_load(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    with pytest.raises(RunnerLoadError, match="unreachable"):
        DockerRunner().load(bytes(SETTINGS))


# --- against the engine ----------------------------------------------------------------------

def containers_with(engine: Engine, token: str) -> list[dict]:
    """Our runner's containers whose command mentions `token` (tests share the engine)."""
    return [c for c in engine.containers([OWNER_LABEL]) if token in c.get("Command", "")]


def wait_until_gone(engine: Engine, token: str, within: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + within
    while (left := containers_with(engine, token)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def orphaned_containers(engine: Engine) -> list[dict]:
    """Runner containers on this machine whose owning process is gone (nothing should ever be left)."""
    found = []
    for container in engine.containers([f"{NODE_LABEL}={socket.gethostname()}"]):
        labels = container.get("Labels") or {}
        if not _process_alive(int(labels.get(PID_LABEL, "0")), labels.get(PID_START_LABEL, "")):
            found.append(container)
    return found


def wait_until_no_orphans(engine: Engine, within: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + within
    while (left := orphaned_containers(engine)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def new_runner(settings: DockerRunnerSettings = SETTINGS, static: bool = False) -> DockerRunner:
    runner = DockerRunner()
    runner.use_static = static
    runner.load(bytes(settings))
    return runner


def test_echo_returns_stdout(engine: Engine) -> None:
    token = uuid.uuid4().hex
    out = new_runner().run(bytes(DockerArgs(cmd=["sh", "-c", f"echo hello; echo noise >&2; : {token}"])))
    assert out == [b"hello\n"]
    assert containers_with(engine, token) == []  # removed after the run


def test_image_from_args_and_env(docker_host: str) -> None:
    runner = new_runner(DockerRunnerSettings(env=["FROM_SETTINGS=1"]))  # no image in the settings
    out = runner.run(bytes(DockerArgs(image=TEST_IMAGE, cmd=["sh", "-c", "echo $FROM_SETTINGS$FROM_ARGS"],
                                      env=["FROM_ARGS=2"])))
    assert out == [b"12\n"]


def test_non_zero_exit_is_retryable_with_stderr(docker_host: str) -> None:
    with pytest.raises(RetryableError) as info:
        new_runner().run(bytes(DockerArgs(cmd=["sh", "-c", "echo out; echo broken >&2; exit 3"])))
    assert info.value.status == ResultStatus.ERROR_AND_RETRY
    assert "exited with code 3" in info.value.message
    assert "broken" in info.value.message


def test_missing_image_is_other_error(docker_host: str) -> None:
    runner = new_runner(DockerRunnerSettings())
    with pytest.raises(OtherError):
        runner.run(bytes(DockerArgs(image="localhost:1/jobworkerp/none:missing", cmd=["true"])))
    with pytest.raises(OtherError, match="no image"):
        runner.run(bytes(DockerArgs(cmd=["true"])))


def test_missing_settings_image_fails_at_load(docker_host: str) -> None:
    with pytest.raises(RunnerLoadError):
        new_runner(DockerRunnerSettings(from_image="localhost:1/jobworkerp/none", tag="missing"))


def test_static_runner_runs_jobs_in_one_container(engine: Engine) -> None:
    runner = new_runner(static=True)
    try:
        first = runner.run(bytes(DockerArgs(cmd=["sh", "-c", "hostname; echo one > /tmp/state"])))
        runner.cancel()  # what the host does before reusing a static runner: must keep the container
        second = runner.run(bytes(DockerArgs(cmd=["sh", "-c", "hostname; cat /tmp/state"])))
        assert first[0].split()[0] == second[0].split()[0]
        assert second[0].split()[1] == b"one"
        with pytest.raises(RetryableError, match="exited with code 5"):
            runner.run(bytes(DockerArgs(cmd=["sh", "-c", "exit 5"])))
    finally:
        if runner._static_container:
            engine.remove(runner._static_container)


def test_static_container_is_recreated_when_it_stopped(engine: Engine) -> None:
    runner = new_runner(static=True)
    try:
        runner.run(bytes(DockerArgs(cmd=["true"])))
        old = runner._static_container
        assert old is not None
        engine.remove(old)
        runner.run(bytes(DockerArgs(cmd=["true"])))
        assert runner._static_container not in (None, old)
    finally:
        if runner._static_container:
            engine.remove(runner._static_container)


OWNER_SCRIPT = textwrap.dedent("""
    import sys
    from jobworkerp.proto.jobworkerp.runner import DockerArgs, DockerRunnerSettings
    from jobworkerp.runners.docker import DockerRunner
    runner = DockerRunner()
    runner.use_static = sys.argv[2] == "static"
    runner.load(bytes(DockerRunnerSettings(from_image="local/busybox", tag="test")))
    print("ready", flush=True)
    runner.run(bytes(DockerArgs(cmd=["sh", "-c", "sleep 300; : " + sys.argv[1]])))
""")


@pytest.mark.parametrize("mode", ["once", "static"])
def test_containers_of_a_killed_host_are_removed(engine: Engine, mode: str) -> None:
    """What a job timeout does to a runner host (SIGKILL of its process group) leaves no container."""
    token = uuid.uuid4().hex
    owner = subprocess.Popen([sys.executable, "-c", OWNER_SCRIPT, token, mode], stdout=subprocess.PIPE,
                             start_new_session=True)
    try:
        assert owner.stdout is not None and owner.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + 30
        while mode == "once" and not containers_with(engine, token) and time.monotonic() < deadline:
            time.sleep(0.1)
        if mode == "static":  # exec'd commands do not show in the container's Command: find it by owner
            while not _owned_by_pid(engine, owner.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _owned_by_pid(engine, owner.pid)
        else:
            assert containers_with(engine, token)
    finally:
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait()
        owner.stdout.close()
    assert wait_until_gone(engine, token) == []
    deadline = time.monotonic() + 30
    while _owned_by_pid(engine, owner.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _owned_by_pid(engine, owner.pid)


def _owned_by_pid(engine: Engine, pid: int) -> list[dict]:
    return [c for c in engine.containers([OWNER_LABEL]) if (c.get("Labels") or {}).get("jobworkerp.pid") == str(pid)]
