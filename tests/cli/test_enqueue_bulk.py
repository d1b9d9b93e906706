"""`job enqueue-bulk --file jobs.jsonl`: one output line per job in file order (job id, or the
refusal: by the client before sending, or the server's status), a summary, exit 1 when any
line failed; the accepted jobs run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, client_command, client_env

pytestmark = pytest.mark.timeout(90)

LINES = [
    {"worker": "bulk-cli", "args": {"args": ["one"]}},
    {"worker": "bulk-cli", "args": {"args": ["two"]}, "priority": "high", "uniq_key": "bulk-cli-k", "timeout": 0,
     "run_after_time": 600000},  # waits ten minutes, holding its key
    {"worker": "bulk-cli", "args": {"args": ["dup"]}, "uniq_key": "bulk-cli-k"},
    {"worker": "bulk-cli", "args": {"nope": 1}},
    {"worker": "bulk-cli-direct", "args": {"args": ["x"]}},
    {"worker": "no-such-worker", "args": {}},
    {"worker": "bulk-cli", "args": {"args": ["later"]}, "run_after_time": 600000},
    {"worker": "bulk-cli", "colour": "red"},
]


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.jsonl"
    text = [json.dumps(line) for line in LINES]
    text.insert(1, "")  # blank lines are skipped, but keep their number
    text.append("not json")
    path.write_text("\n".join(text) + "\n")
    return path


def test_a_jsonl_file_gives_one_line_per_job_and_a_summary(cli: Cli, tmp_path: Path) -> None:
    cli("worker", "create", "-n", "bulk-cli", "-r", "1", "-s", '{"name":"echo"}', "--response-type",
        "NO_RESULT", "--store-success").ok()
    cli("worker", "create", "-n", "bulk-cli-direct", "-r", "1", "-s", '{"name":"echo"}').ok()
    done = cli("--json", "job", "enqueue-bulk", "--file", str(_write(tmp_path)), "--batch-size", "3")
    assert done.returncode == 1, done.stderr
    *items, summary = done.json_lines()
    assert summary == {"accepted": 3, "failed": 6}
    assert [item["line"] for item in items] == [1, 3, 4, 5, 6, 7, 8, 9, 10]
    ok = {item["line"]: item["id"] for item in items if "id" in item}
    assert sorted(ok) == [1, 3, 8]
    errors = {item["line"]: item["error"] for item in items if "error" in item}
    assert errors[4]["code"] == "ALREADY_EXISTS" and ok[3] in errors[4]["message"]
    assert errors[5] == {"code": "NOT_SENT", "message": errors[5]["message"]} and "nope" in errors[5]["message"]
    assert errors[6]["code"] == "INVALID_ARGUMENT" and errors[6]["message"].startswith("worker_name:")
    assert "DIRECT" in errors[6]["message"]
    assert errors[7]["code"] == "NOT_SENT" and "no-such-worker" in errors[7]["message"]
    assert errors[9]["code"] == "NOT_SENT" and errors[9]["message"].startswith("colour: unknown key")
    assert errors[10]["code"] == "NOT_SENT" and "not valid JSON" in errors[10]["message"]
    # The accepted jobs run: line 1's result is stored (--store-success); lines 3 and 8 wait.
    results = cli("--json", "job-result", "list-by-job-id", "-j", ok[1]).ok().json_lines()
    for _ in range(100):
        if results:
            break
        results = cli("--json", "job-result", "list-by-job-id", "-j", ok[1]).ok().json_lines()
    assert results and results[0]["status"] == "SUCCESS", results
    for line in (3, 8):
        assert cli("--json", "job", "find", "-i", ok[line]).ok().json()["id"] == ok[line]
        cli("job", "delete", "-i", ok[line]).ok()


def test_stdin_and_text_output(cli: Cli) -> None:
    cli("worker", "create", "-n", "bulk-cli-stdin", "-r", "1", "-s", '{"name":"echo"}', "--response-type",
        "NO_RESULT").ok()
    lines = "".join(json.dumps({"worker": "bulk-cli-stdin", "args": {"args": [str(i)]}}) + "\n" for i in range(5))
    done = subprocess.run(client_command(cli.address, "job", "enqueue-bulk", "-f", "-"), input=lines,
                          capture_output=True, text=True, timeout=60, env=client_env())
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert [line.split(":")[0] for line in out[:5]] == [f"line {i}" for i in range(1, 6)]
    assert out[5] == "enqueued 5 of 5 jobs, 0 failed"


def test_an_unreadable_file_is_bad_input(cli: Cli, tmp_path: Path) -> None:
    done = cli("job", "enqueue-bulk", "-f", str(tmp_path / "missing.jsonl"))
    assert done.returncode == 2 and "--file: cannot read" in done.stderr
