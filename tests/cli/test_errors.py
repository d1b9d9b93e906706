"""Failures are one clear line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

import pytest

from jobworkerp.testing.server import free_port
from tests.cli.conftest import Cli, Result, run_cli

pytestmark = pytest.mark.timeout(60)


def one_error_line(result: Result, code: int) -> str:
    assert result.returncode == code, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("jobworkerp-client: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def echo_worker(cli: Cli) -> str:
    cli("worker", "create", "-n", "errors-echo", "-r", "1", "-s", '{"name":"echo"}').ok()
    return "errors-echo"


def test_bad_json(cli: Cli, echo_worker: str) -> None:
    line = one_error_line(cli("job", "enqueue", "-w", echo_worker, "-a", '{"args":['), 2)
    assert "--args is not valid JSON" in line


def test_unknown_field_is_named_with_the_valid_ones(cli: Cli, echo_worker: str) -> None:
    line = one_error_line(cli("job", "enqueue", "-w", echo_worker, "-a", '{"argz":["x"]}'), 2)
    assert '"argz"' in line and "jobworkerp.runner.CommandArgs" in line and "valid fields: args" in line


def test_unknown_nested_field_in_settings(cli: Cli) -> None:
    line = one_error_line(cli("worker", "create", "-n", "bad-settings", "-r", "2",
                              "-s", '{"base_url":"http://x","timeout":3}'), 2)
    assert '"timeout"' in line and "valid fields: base_url" in line


def test_wrong_type_in_json(cli: Cli, echo_worker: str) -> None:
    line = one_error_line(cli("job", "enqueue", "-w", echo_worker, "-a", '{"args":5}'), 2)
    assert "CommandArgs" in line


def test_unknown_worker_name(cli: Cli) -> None:
    line = one_error_line(cli("job", "enqueue", "-w", "no-such-worker", "-a", '{"args":[]}'), 1)
    assert "'no-such-worker' not found" in line


def test_unknown_runner_on_create(cli: Cli) -> None:
    assert "runner 4242 not found" in one_error_line(cli("worker", "create", "-n", "x", "-r", "4242", "-s", "{}"), 1)


def test_server_side_rejections_name_the_status(cli: Cli, echo_worker: str) -> None:
    duplicate = one_error_line(cli("worker", "create", "-n", echo_worker, "-r", "1", "-s", '{"name":"echo"}'), 1)
    assert "ALREADY_EXISTS" in duplicate
    periodic_direct = one_error_line(cli("worker", "create", "-n", "pd", "-r", "1", "-s", '{"name":"echo"}',
                                         "-p", "5000", "--response-type", "DIRECT"), 1)
    assert "INVALID_ARGUMENT" in periodic_direct and "periodic_interval" in periodic_direct


def test_listen_timeout_and_call_deadline(cli: Cli) -> None:
    cli("worker", "create", "-n", "never-done", "-r", "1", "-s", '{"name":"sleep"}', "--response-type",
        "LISTEN_AFTER", "--store-success", "--store-failure").ok()
    listen = ("job-result", "listen", "-j", "12345", "-w", "never-done")
    assert "DEADLINE_EXCEEDED" in one_error_line(cli(*listen, "-t", "200"), 1)
    assert "DEADLINE_EXCEEDED" in one_error_line(cli("-t", "300", *listen, "-t", "60000"), 1)


def test_server_down() -> None:
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    line = one_error_line(run_cli(address, "runner", "list"), 3)
    assert f"server not reachable at {address}" in line


def test_bad_address_and_usage_errors() -> None:
    assert "unsupported scheme" in one_error_line(run_cli("ftp://localhost:1", "runner", "list"), 2)
    missing = run_cli("http://127.0.0.1:9", "worker", "create", "-n", "x")
    assert missing.returncode == 2 and "required" in missing.stderr
    bad_priority = run_cli("http://127.0.0.1:9", "job", "enqueue", "-w", "x", "-p", "urgent")
    assert bad_priority.returncode == 2 and "high, medium or low" in bad_priority.stderr
