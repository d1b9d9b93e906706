"""What runs inside a runner host: static runners are loaded once, others per job."""

from __future__ import annotations

import pytest

from jobworkerp.proto.jobworkerp.data import ResultStatus
from jobworkerp.proto.jobworkerp.runner import CommandArgs, CommandRunnerSettings
from jobworkerp.runners import host
from jobworkerp.runners.base import RetryableError, RunnerLoadError
from jobworkerp.runners.command import CommandRunner
from tests.unit import counting_runner

pytestmark = pytest.mark.timeout(10)
REF = "tests.unit.counting_runner:CountingRunner"


@pytest.fixture(autouse=True)
def fresh_host_state():
    counting_runner.loads.clear()
    host._static_runners.clear()
    yield
    host._static_runners.clear()


def test_static_runner_is_loaded_once_and_reused() -> None:
    outputs = [host.run_job(REF, b"s", b"a", worker_id=1, use_static=True) for _ in range(3)]
    assert counting_runner.loads == [b"s"]
    assert [o[2] for o in outputs] == [b"1", b"2", b"3"]


def test_changed_settings_load_a_new_static_runner() -> None:
    host.run_job(REF, b"v1", b"a", worker_id=1, use_static=True)
    out = host.run_job(REF, b"v2", b"a", worker_id=1, use_static=True)
    assert counting_runner.loads == [b"v1", b"v2"]
    assert out[0] == b"v2"


def test_non_static_runner_is_loaded_for_every_job() -> None:
    outputs = [host.run_job(REF, b"s", b"a", worker_id=1, use_static=False) for _ in range(3)]
    assert counting_runner.loads == [b"s", b"s", b"s"]
    assert [o[2] for o in outputs] == [b"1", b"1", b"1"]


def test_load_failure_is_a_fatal_runner_error() -> None:
    with pytest.raises(RunnerLoadError) as info:
        host.run_job("tests.unit.counting_runner:BrokenRunner", b"s", b"a", worker_id=1, use_static=False)
    assert info.value.status == ResultStatus.FATAL_ERROR
    assert "no such thing" in str(info.value)


def test_command_runner_output_and_failures() -> None:
    runner = CommandRunner()
    runner.load(bytes(CommandRunnerSettings(name="sh")))
    assert runner.run(bytes(CommandArgs(args=["-c", "printf 'a\\nb'"]))) == [b"a\nb"]
    with pytest.raises(RetryableError, match="exit code 4") as info:
        runner.run(bytes(CommandArgs(args=["-c", "echo bad >&2; exit 4"])))
    assert "bad" in str(info.value)
    missing = CommandRunner()
    missing.load(bytes(CommandRunnerSettings(name="/no/such/program")))
    with pytest.raises(RetryableError, match="cannot start"):
        missing.run(b"")
    with pytest.raises(RunnerLoadError, match="runner_settings.name"):
        CommandRunner().load(b"")
