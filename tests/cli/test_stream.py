"""`job enqueue-for-stream` and `job-result listen-stream --job-id`, as real subprocesses: a job's
output is printed as it is produced (the printing process is what lets the job end), then its
result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, finish
from tests.cli.streams import LineReader
from tests.e2e.streamed import gated

pytestmark = pytest.mark.timeout(180)
WAIT_S = 60.0  # hang guard only


def create_sh(cli: Cli, name: str, response_type: str) -> None:
    cli("--json", "worker", "create", "-n", name, "-r", "1", "-s", '{"name":"sh"}', "--response-type", response_type,
        "--store-success", "--store-failure").ok()


def script_args(script: str) -> str:
    return json.dumps({"args": ["-c", script]})


def test_enqueue_for_stream_prints_the_output_then_the_result(cli: Cli) -> None:
    create_sh(cli, "cli-streamed", "DIRECT")
    plain = cli("job", "enqueue-for-stream", "-w", "cli-streamed", "-a", script_args("echo one; echo two")).ok()
    assert plain.stdout.startswith("one\ntwo\n")
    assert "SUCCESS" in plain.stdout and "enqueued" in plain.stderr
    lines = cli("--json", "job", "enqueue-for-stream", "-w", "cli-streamed", "-a",
                script_args("echo one; echo two")).ok().json_lines()
    assert lines[0].keys() == {"id"}
    assert lines[1:3] == [{"data": "one\n"}, {"data": "two\n"}]
    assert lines[3]["status"] == "SUCCESS" and lines[3]["job_id"] == lines[0]["id"] and len(lines) == 4


def test_listen_stream_prints_each_chunk_as_it_comes_then_the_result(cli: Cli, tmp_path: Path) -> None:
    create_sh(cli, "cli-followed", "LISTEN_AFTER")
    gate = tmp_path / "gate"
    enqueuer = LineReader(cli.start("--json", "job", "enqueue-for-stream", "-w", "cli-followed", "-a",
                                    script_args(gated(gate, "first", "second"))))
    try:
        job = enqueuer.next_json(timeout=WAIT_S)
        assert job is not None and "id" in job
        listener = cli.start("job-result", "listen-stream", "--job-id", job["id"])
        assert listener.stdout is not None
        # The job waits for the gate after its first line: the listener printed it while it ran.
        assert listener.stdout.readline() == "first\n"
        gate.touch()
        done = finish(listener, WAIT_S).ok()
        assert done.stdout.startswith("second\n") and "SUCCESS" in done.stdout
    finally:
        gate.touch()
        enqueuer.stop()
