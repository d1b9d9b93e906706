"""The runner policy (runners/policy.py): its settings, its checks, and the runners' own
enforcement -- in this process, through a real runner-host pool, and against the real engine."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from actors.process_pool import ProcessPool
from jobworkerp.app import RUNNER_HOST_PRELOAD
from jobworkerp.config import BUILTIN_RUNNER_NAMES, ConfigError, load_config
from jobworkerp.proto.jobworkerp.runner import CommandArgs, CommandRunnerSettings, DockerArgs, DockerRunnerSettings
from jobworkerp.runners.base import FatalError, OtherError, RunnerLoadError
from jobworkerp.runners.command import CommandRunner
from jobworkerp.runners.docker import DockerRunner
from jobworkerp.runners.docker_api import Engine
from jobworkerp.runners.host import run_job
from jobworkerp.runners.policy import PolicyViolation, RunnerPolicy, host_environment
from jobworkerp.runners.registry import BUILTIN_RUNNERS

pytestmark = pytest.mark.timeout(90)
POLICY_VARS = ("RUNNERS_ENABLED", "COMMAND_ALLOWLIST", "DOCKER_ALLOWED_BINDS", "DOCKER_ALLOWED_IMAGES",
               "DOCKER_MEMORY_LIMIT_MB", "DOCKER_PIDS_LIMIT", "DOCKER_CPUS")
SETTINGS = DockerRunnerSettings(from_image="local/busybox", tag="test")
COMMAND_REF = "jobworkerp.runners.command:CommandRunner"
DOCKER_REF = "jobworkerp.runners.docker:DockerRunner"
# cgroup v2 inside the container, else v1 (this engine's host runs v1): memory, pids, CPU quota.
LIMITS_SCRIPT = ("cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
                 "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max; "
                 "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us")


@pytest.fixture(autouse=True)
def clean_policy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runners read the policy from the environment: start every test from none."""
    for var in POLICY_VARS:
        monkeypatch.delenv(var, raising=False)


def policy(**env: str) -> RunnerPolicy:
    return RunnerPolicy.from_config(load_config(env, dotenv_path=None))


# --- settings --------------------------------------------------------------------------------

def test_defaults_keep_runners_and_commands_open_but_refuse_binds() -> None:
    p = policy()
    assert p.runners_enabled is None and p.command_allowlist is None and p.docker_allowed_images is None
    assert p.docker_allowed_binds == ()
    assert p.docker_memory_limit_mb > 0 and p.docker_pids_limit > 0 and p.docker_cpus >= 1.0
    with pytest.raises(PolicyViolation, match="DOCKER_ALLOWED_BINDS"):
        p.check_volume("/srv/data:/host:ro", "args.volumes[0]")


@pytest.mark.parametrize(("var", "raw"), [
    ("RUNNERS_ENABLED", "COMMAND,SHELL"), ("RUNNERS_ENABLED", ","), ("COMMAND_ALLOWLIST", "bin/echo"),
    ("COMMAND_ALLOWLIST", " , "), ("DOCKER_ALLOWED_BINDS", "relative/dir"), ("DOCKER_ALLOWED_IMAGES", ","),
    ("DOCKER_CPUS", "-1"), ("DOCKER_CPUS", "nan"), ("DOCKER_PIDS_LIMIT", "-5"),
])
def test_malformed_settings_stop_the_start(var: str, raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({var: raw}, dotenv_path=None)
    assert caught.value.variable == var


def test_runner_names_match_the_registry() -> None:
    assert {spec.name for spec in BUILTIN_RUNNERS} == set(BUILTIN_RUNNER_NAMES)
    assert policy(RUNNERS_ENABLED="command, docker").runners_enabled == ("COMMAND", "DOCKER")


def test_host_environment_reads_back_as_the_same_policy() -> None:
    for env in ({}, {"RUNNERS_ENABLED": "COMMAND", "COMMAND_ALLOWLIST": "echo,/bin/true",
                     "DOCKER_ALLOWED_BINDS": "/srv,cache", "DOCKER_ALLOWED_IMAGES": "local/*",
                     "DOCKER_MEMORY_LIMIT_MB": "0", "DOCKER_PIDS_LIMIT": "7", "DOCKER_CPUS": "0.25"}):
        config = load_config(env, dotenv_path=None)
        assert RunnerPolicy.from_config(load_config(host_environment(config), dotenv_path=None)) == \
            RunnerPolicy.from_config(config)


# --- checks ----------------------------------------------------------------------------------

def test_runners_enabled_governs_built_ins_only() -> None:
    p = policy(RUNNERS_ENABLED="COMMAND")
    p.check_runner("COMMAND")
    p.check_runner("hello")  # a plugin: PLUGINS_RUNNER_DIR decides
    with pytest.raises(PolicyViolation, match="runner DOCKER is disabled") as caught:
        p.check_runner("DOCKER")
    assert caught.value.field == "runner_id"


def test_command_allowlist_is_exact() -> None:
    p = policy(COMMAND_ALLOWLIST="echo,/usr/bin/env")
    p.check_command("echo", "runner_settings.name")
    p.check_command("/usr/bin/env", "runner_settings.name")
    for other in ("cat", "/bin/echo", "./echo", "/usr/bin/../bin/env", "/usr/bin//env"):
        with pytest.raises(PolicyViolation, match="COMMAND_ALLOWLIST"):
            p.check_command(other, "runner_settings.name")


def test_binds_must_resolve_inside_an_allowed_path(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (allowed / "escape").symlink_to(outside)
    (tmp_path / "allowed-too").mkdir()  # shares a prefix with `allowed`, is not inside it
    p = policy(DOCKER_ALLOWED_BINDS=f"{allowed},cache")
    for ok in (f"{allowed}:/h", f"{allowed}/sub:/h:ro", f"{allowed}/not-yet:/h", "/scratch", "cache:/c"):
        p.check_volume(ok, "args.volumes[0]")
    for bad in (f"{allowed}/../outside:/h", f"{allowed}/escape:/h", f"{allowed}/escape/x:/h",
                f"{tmp_path}/allowed-too:/h", "/:/host", "/run/jobworkerp-docker.sock:/var/run/docker.sock",
                "other:/c", "./rel:/h"):
        with pytest.raises(PolicyViolation) as caught:
            p.check_volume(bad, "args.volumes[0]")
        assert caught.value.field == "args.volumes[0]"


def test_docker_settings_and_args_name_the_field() -> None:
    p = policy(DOCKER_ALLOWED_IMAGES="local/busybox:*")
    p.check_docker_settings(SETTINGS)
    p.check_docker_args(DockerArgs(image="local/busybox:other", volumes=["/scratch"]))
    cases = [
        (lambda: p.check_docker_settings(DockerRunnerSettings(from_image="busybox", tag="latest")),
         "runner_settings.from_image"),
        (lambda: p.check_docker_settings(DockerRunnerSettings(repo="evil/img")), "runner_settings.repo"),
        (lambda: p.check_docker_settings(DockerRunnerSettings(from_src="http://x/rootfs.tar", repo="local/busybox")),
         "runner_settings.from_src"),
        (lambda: p.check_docker_settings(DockerRunnerSettings(from_image="local/busybox", volumes=["/etc:/e"])),
         "runner_settings.volumes[0]"),
        (lambda: p.check_docker_args(DockerArgs(image="alpine:3")), "args.image"),
        (lambda: p.check_docker_args(DockerArgs(volumes=["/scratch", "/:/host"])), "args.volumes[1]"),
    ]
    for check, field in cases:
        with pytest.raises(PolicyViolation) as caught:
            check()
        assert caught.value.field == field


# --- the runners enforce it themselves ---------------------------------------------------------

def test_command_runner_refuses_an_executable_off_the_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMAND_ALLOWLIST", "echo")
    echo, cat = CommandRunner(), CommandRunner()
    echo.load(bytes(CommandRunnerSettings(name="echo")))
    cat.load(bytes(CommandRunnerSettings(name="cat")))
    assert echo.run(bytes(CommandArgs(args=["hi"]))) == [b"hi\n"]
    with pytest.raises(FatalError, match="'cat' is not an allowed executable"):
        cat.run(bytes(CommandArgs(args=["/etc/hostname"])))


async def test_runner_hosts_get_the_servers_policy() -> None:
    """The server's resolved policy reaches its hosts through the pool's environment, and the
    host refuses what it forbids even though nothing on the way checked it."""
    config = load_config({"COMMAND_ALLOWLIST": "echo", "RUNNERS_ENABLED": "COMMAND"}, dotenv_path=None)
    async with ProcessPool(1, preload=RUNNER_HOST_PRELOAD, env=host_environment(config)) as pool:
        echo = bytes(CommandRunnerSettings(name="echo"))
        assert await pool.run(run_job, COMMAND_REF, echo, bytes(CommandArgs(args=["ok"])), 1, False) == [b"ok\n"]
        with pytest.raises(FatalError, match="COMMAND_ALLOWLIST"):
            await pool.run(run_job, COMMAND_REF, bytes(CommandRunnerSettings(name="cat")),
                           bytes(CommandArgs(args=["/etc/hostname"])), 1, False)
        with pytest.raises(FatalError, match="runner DOCKER is disabled"):
            await pool.run(run_job, DOCKER_REF, bytes(SETTINGS), bytes(DockerArgs(cmd=["true"])), 2, False)


# --- DOCKER against the engine -----------------------------------------------------------------

def _run(settings: DockerRunnerSettings, args: DockerArgs) -> bytes:
    runner = DockerRunner()
    runner.load(bytes(settings))
    return runner.run(bytes(args))[0]


def test_docker_bind_inside_the_allowlist_works(docker_host: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "marker").write_text("inside\n")
    (tmp_path / "secret").write_text("outside\n")
    monkeypatch.setenv("DOCKER_ALLOWED_BINDS", str(tmp_path / "data"))
    out = _run(SETTINGS, DockerArgs(cmd=["cat", "/h/marker"], volumes=[f"{tmp_path / 'data'}:/h:ro"]))
    assert out == b"inside\n"
    with pytest.raises(OtherError, match=r"args.volumes\[0\]: bind mount of host path"):
        _run(SETTINGS, DockerArgs(cmd=["cat", "/h/secret"], volumes=[f"{tmp_path / 'data'}/..:/h:ro"]))
    with pytest.raises(RunnerLoadError, match=r"runner_settings.volumes\[0\]"):
        DockerRunner().load(bytes(DockerRunnerSettings(from_image="local/busybox", tag="test",
                                                       volumes=[f"{tmp_path}:/h"])))


def test_docker_image_outside_the_allowlist_is_not_pulled(docker_host: str, engine: Engine,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_ALLOWED_IMAGES", "local/busybox:test")
    assert _run(SETTINGS, DockerArgs(cmd=["echo", "allowed"])) == b"allowed\n"
    other = f"local/policy-never-pulled:{uuid.uuid4().hex[:8]}"
    with pytest.raises(OtherError, match=r"args.image: image .* is not allowed"):
        _run(SETTINGS, DockerArgs(image=other, cmd=["true"]))
    with pytest.raises(RunnerLoadError, match="runner_settings.from_image"):
        DockerRunner().load(bytes(DockerRunnerSettings(from_image=other.split(":")[0], tag=other.split(":")[1])))
    assert engine.image(other) is None


@pytest.mark.parametrize("static", [False, True])
def test_docker_containers_get_the_limits(docker_host: str, engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                          static: bool) -> None:
    monkeypatch.setenv("DOCKER_MEMORY_LIMIT_MB", "256")
    monkeypatch.setenv("DOCKER_PIDS_LIMIT", "64")
    monkeypatch.setenv("DOCKER_CPUS", "0.5")
    runner = DockerRunner()
    runner.use_static = static
    runner.load(bytes(SETTINGS))
    try:
        memory, pids, cpu = runner.run(bytes(DockerArgs(cmd=["sh", "-c", LIMITS_SCRIPT])))[0].decode().split("\n")[:3]
    finally:
        runner.cancel()
        if runner._static_container is not None:
            engine.remove(runner._static_container)
    assert int(memory) == 256 * 1024 * 1024
    assert int(pids) == 64
    assert cpu.split()[0] == "50000"  # quota per 100 ms period: half a CPU

