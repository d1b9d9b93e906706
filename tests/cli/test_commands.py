"""Every runner / worker / job / job-result / job-status command, through the real CLI and server."""

from __future__ import annotations

import base64

import pytest

from tests.cli.conftest import Cli, finish
from tests.cli.streams import LineReader

pytestmark = pytest.mark.timeout(90)

TEN_MINUTES_MS = "600000"  # a --run-after-time far enough ahead that the job stays stored


def create_echo(cli: Cli, name: str, *options: str, command: str = "echo") -> str:
    return cli("--json", "worker", "create", "-n", name, "-r", "1", "-s", f'{{"name":"{command}"}}',
               *options).ok().json()["id"]


def test_runner_find_count_and_delete_of_a_builtin(cli: Cli) -> None:
    runner = cli("--json", "runner", "find", "-i", "1").ok().json()
    assert runner["name"] == "COMMAND" and runner["runner_type"] == "COMMAND"
    assert "CommandRunnerSettings" in runner["runner_settings_proto"]
    assert cli("--json", "runner", "count").ok().json()["total"] >= 4
    assert [r["id"] for r in cli("--json", "runner", "list", "-o", "1", "-l", "2").ok().json_lines()] != []
    refused = cli("runner", "delete", "-i", "1")
    assert refused.returncode == 1 and "INVALID_ARGUMENT" in refused.stderr
    missing = cli("runner", "find", "-i", "424242")
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_worker_create_find_list_count_delete(cli: Cli) -> None:
    before = cli("--json", "worker", "count").ok().json()["total"]
    worker_id = create_echo(cli, "crud-echo", "--response-type", "NO_RESULT", "--store-failure",
                            "--retry-type", "LINEAR", "--retry-interval", "50", "--max-retry", "2")
    found = cli("--json", "worker", "find", "-i", worker_id).ok().json()
    assert found["name"] == "crud-echo"
    assert found["runner_settings"] == {"name": "echo"}  # decoded with the runner's settings proto
    assert found["runner_name"] == "COMMAND"
    assert (found["response_type"], found["store_success"], found["store_failure"]) == ("NO_RESULT", False, True)
    assert found["retry_policy"]["type"] == "LINEAR" and found["retry_policy"]["max_retry"] == 2
    assert found["retry_policy"]["interval"] == 50
    assert cli("--json", "worker", "find-by-name", "-n", "crud-echo").ok().json()["id"] == worker_id
    assert worker_id in [w["id"] for w in cli("--json", "worker", "list").ok().json_lines()]
    assert cli("--json", "worker", "count").ok().json()["total"] == before + 1
    table = cli("worker", "list").ok().stdout
    assert "crud-echo" in table and '{"name": "echo"}' in table
    assert cli("--json", "worker", "delete", "-i", worker_id).ok().json() == {"is_success": True}
    assert cli("worker", "find", "-i", worker_id).returncode == 1


def test_worker_default_response_type_is_direct(cli: Cli) -> None:
    worker_id = create_echo(cli, "default-direct")
    assert cli("--json", "worker", "find", "-i", worker_id).ok().json()["response_type"] == "DIRECT"


def test_worker_update_changes_only_what_was_given(cli: Cli) -> None:
    worker_id = create_echo(cli, "to-update", "--response-type", "NO_RESULT", "--store-success",
                            "--retry-type", "CONSTANT", "--retry-interval", "100", "--max-retry", "4")
    before = cli("--json", "worker", "find", "-i", worker_id).ok().json()
    cli("worker", "update", "-i", worker_id, "--no-store-success", "--store-failure", "--max-retry", "1").ok()
    after = cli("--json", "worker", "find", "-i", worker_id).ok().json()
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"store_success", "store_failure", "retry_policy"}
    assert after["retry_policy"] == {**before["retry_policy"], "max_retry": 1}
    cli("worker", "update", "-i", worker_id, "-n", "updated", "-s", '{"name":"printf"}').ok()
    renamed = cli("--json", "worker", "find-by-name", "-n", "updated").ok().json()
    assert renamed["id"] == worker_id and renamed["runner_settings"] == {"name": "printf"}
    assert renamed["store_failure"] is True
    missing = cli("worker", "update", "-i", "987654", "-n", "x")
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_direct_enqueue_prints_the_result_with_options(cli: Cli) -> None:
    worker_id = create_echo(cli, "direct-echo")
    by_name = cli("--json", "job", "enqueue", "-w", "direct-echo", "-a", '{"args":["hello","world"]}',
                  "-p", "high", "-t", "5000", "-u", "once").ok().json()
    result = by_name["result"]
    assert result["job_id"] == by_name["id"]
    assert (result["status"], result["output"]) == ("SUCCESS", ["hello world\n"])
    assert (result["priority"], result["timeout"], result["uniq_key"]) == ("HIGH", 5000, "once")
    assert result["start_time"] > 0 and result["start_time_iso"].startswith("20")
    by_id = cli("--json", "job", "enqueue", "-w", worker_id, "-a", '{"args":["by","id"]}').ok().json()
    assert by_id["result"]["output"] == ["by id\n"]
    table = cli("job", "enqueue", "-w", "direct-echo", "-a", '{"args":["in","a","table"]}').ok().stdout
    assert "in a table" in table and "SUCCESS" in table


def test_binary_output_is_shown_as_base64(cli: Cli) -> None:
    create_echo(cli, "binary", command="printf")
    result = cli("--json", "job", "enqueue", "-w", "binary", "-a", r'{"args":["\\377\\376abc"]}').ok().json()["result"]
    [item] = result["output"]
    assert base64.b64decode(item["base64"]) == b"\xff\xfeabc"


def test_scheduled_job_find_list_count_status_delete(cli: Cli) -> None:
    create_echo(cli, "later", "--response-type", "NO_RESULT")
    job_id = cli("--json", "job", "enqueue", "-w", "later", "-a", '{"args":["x"]}', "-r", TEN_MINUTES_MS,
                 "-p", "low").ok().json()["id"]
    job = cli("--json", "job", "find", "-i", job_id).ok().json()
    assert job["args"] == {"args": ["x"]} and job["priority"] == "LOW"
    assert job["run_after_time"] > job["enqueue_time"] and job["run_after_time_iso"]
    assert job_id in [j["id"] for j in cli("--json", "job", "list").ok().json_lines()]
    assert cli("--json", "job", "count").ok().json()["total"] >= 1
    assert cli("--json", "job-status", "find", "-i", job_id).ok().json() == {"job_id": job_id, "status": "PENDING"}
    assert {"job_id": job_id, "status": "PENDING"} in cli("--json", "job-status", "list").ok().json_lines()
    assert job_id in cli("job", "list").ok().stdout
    assert cli("--json", "job", "delete", "-i", job_id).ok().json() == {"is_success": True}
    assert cli("job", "find", "-i", job_id).returncode == 1
    assert cli("job-status", "find", "-i", job_id).returncode == 1
    assert cli("--json", "job", "delete", "-i", job_id).returncode == 1  # nothing left to delete


def test_args_go_raw_when_the_runner_has_no_args_proto(cli: Cli) -> None:
    """GRPC_UNARY declares no args message: --args is sent (and shown) as plain UTF-8."""
    cli("worker", "create", "-n", "raw-args", "-r", "3", "-s", '{"url":"http://127.0.0.1:9","path":"/x"}',
        "--response-type", "NO_RESULT").ok()
    job_id = cli("--json", "job", "enqueue", "-w", "raw-args", "-a", "not json at all",
                 "-r", TEN_MINUTES_MS).ok().json()["id"]
    assert cli("--json", "job", "find", "-i", job_id).ok().json()["args"] == "not json at all"
    cli("job", "delete", "-i", job_id).ok()


def test_job_result_commands(cli: Cli) -> None:
    create_echo(cli, "stored", "--response-type", "NO_RESULT", "--store-success", "--store-failure")
    job_id = cli("--json", "job", "enqueue", "-w", "stored", "-a", '{"args":["kept"]}').ok().json()["id"]
    listened = cli("--json", "job-result", "listen", "-j", job_id, "-w", "stored", "-t", "30000").ok().json()
    assert listened["output"] == ["kept\n"] and listened["worker_name"] == "stored"
    [by_job] = cli("--json", "job-result", "list-by-job-id", "-j", job_id).ok().json_lines()
    assert by_job["id"] == listened["id"]
    found = cli("--json", "job-result", "find", "-i", listened["id"]).ok().json()
    assert found["args"] == {"args": ["kept"]} and found["status"] == "SUCCESS"
    assert listened["id"] in [r["id"] for r in cli("--json", "job-result", "list").ok().json_lines()]
    total = cli("--json", "job-result", "count").ok().json()["total"]
    assert total >= 1
    table = cli("job-result", "find", "-i", listened["id"]).ok().stdout
    assert "SUCCESS" in table and "kept" in table and found["end_time_iso"] in table
    assert cli("--json", "job-result", "delete", "-i", listened["id"]).ok().json() == {"is_success": True}
    assert cli("job-result", "find", "-i", listened["id"]).returncode == 1
    assert cli("--json", "job-result", "count").ok().json()["total"] == total - 1


def test_listen_stream_prints_results_as_they_finish(cli: Cli) -> None:
    create_echo(cli, "streamed", "--response-type", "NO_RESULT")
    stream = LineReader(cli.start("--json", "job-result", "listen-stream", "-w", "streamed"))
    try:
        # The stream only sees results finished after it subscribed, and there is no "subscribed"
        # signal: enqueue until one arrives.
        for attempt in range(20):
            cli("job", "enqueue", "-w", "streamed", "-a", f'{{"args":["run {attempt}"]}}').ok()
            result = stream.next_json(timeout=2)
            if result is not None:
                break
        else:
            raise AssertionError("listen-stream printed nothing")
        assert result["worker_name"] == "streamed" and result["output"][0].startswith("run ")
    finally:
        stream.stop()


def test_listen_returns_as_soon_as_the_result_exists_for_two_listeners(cli: Cli) -> None:
    create_echo(cli, "short-sleep", "--response-type", "LISTEN_AFTER", "--store-success", "--store-failure",
                command="sleep")
    job_id = cli("--json", "job", "enqueue", "-w", "short-sleep", "-a", '{"args":["1"]}').ok().json()["id"]
    listen = ("--json", "job-result", "listen", "--job-id", job_id, "--timeout", "70000", "--worker", "short-sleep")
    listeners = [cli.start(*listen) for _ in range(2)]
    # Far below the 70 s listen timeout: they return when the one-second job ends.
    results = [finish(p, timeout=30).ok().json() for p in listeners]
    assert {r["status"] for r in results} == {"SUCCESS"}
    assert results[0]["id"] == results[1]["id"] and results[0]["job_id"] == job_id
    late = cli("--json", *listen[1:]).ok().json()  # after the fact: answered from storage at once
    assert late["id"] == results[0]["id"]
