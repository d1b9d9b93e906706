"""What a real server logs, and where: LOG_LEVEL keeps libraries at WARNING unless TRACE, JSON
lines carry the job they are about, TZ_OFFSET_HOURS sets the timestamps' offset, LOG_USE_STDOUT
picks the console stream (cli/logs.py, joblog.py)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.storage.rdb import DEFAULT_CHANNEL
from jobworkerp.testing.server import ServerProcess, connect, run

pytestmark = pytest.mark.timeout(120)

OWN = ("jobworkerp", "actors")


def _run_one_job(server: ServerProcess) -> tuple[int, int]:
    """A DIRECT echo job, over gRPC; its (job id, worker id)."""

    async def scenario() -> tuple[int, int]:
        async with connect(server.port) as c:
            worker = (await c.worker.create(data.WorkerData(
                name="echo", runner_id=data.RunnerId(value=1), response_type=data.ResponseType.DIRECT,
                runner_settings=bytes(runner_pb.CommandRunnerSettings(name="echo"))))).id
            done = await c.job.enqueue(svc.JobRequest(worker_id=worker, args=bytes(runner_pb.CommandArgs(args=["hi"]))))
            assert done.result is not None and done.result.data.status == data.ResultStatus.SUCCESS
            return done.id.value, worker.value

    return run(scenario())


def _served(tmp_path: Path, env: dict[str, str], **kwargs: Any) -> tuple[ServerProcess, int, int]:
    """A server with `env` that ran one job and has stopped."""
    server = ServerProcess(tmp_path, env, **kwargs).start()
    try:
        job_id, worker_id = _run_one_job(server)
    finally:
        assert server.stop() == 0, server.log()
    return server, job_id, worker_id


def _records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_debug_shows_the_servers_lines_and_no_library_chatter(tmp_path: Path) -> None:
    server, job_id, worker_id = _served(tmp_path, {"LOG_LEVEL": "DEBUG", "LOG_USE_JSON": "true"})
    records = _records(server.log())
    chatter = [r for r in records if not r["logger"].startswith(OWN) and r["level"] in ("DEBUG", "INFO")]
    assert chatter == []
    about_the_job = [r for r in records if r.get("job_id") == job_id]
    assert {r["message"] for r in about_the_job} >= {f"job {job_id}: starting", f"job {job_id}: done"}
    for record in about_the_job:
        assert (record["worker_id"], record["channel"]) == (worker_id, DEFAULT_CHANNEL)
    assert all("job_id" not in r for r in records if "listening on" in r["message"])  # not about a job


def test_trace_lets_the_libraries_debug_lines_through(tmp_path: Path) -> None:
    server, _, _ = _served(tmp_path, {"LOG_LEVEL": "TRACE", "LOG_USE_JSON": "true"})
    loggers = {r["logger"].split(".")[0] for r in _records(server.log()) if r["level"] == "DEBUG"}
    assert {"hpack", "jobworkerp"} <= loggers


def test_info_shows_no_library_info_lines(tmp_path: Path) -> None:
    server, _, _ = _served(tmp_path, {"LOG_LEVEL": "INFO", "LOG_USE_JSON": "true"})
    records = _records(server.log())
    assert any("listening on" in r["message"] for r in records)
    assert [r for r in records if not r["logger"].startswith(OWN) and r["level"] == "INFO"] == []


def test_tz_offset_hours_sets_the_offset_of_json_timestamps(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    server, _, _ = _served(tmp_path, {"LOG_USE_JSON": "true", "TZ_OFFSET_HOURS": "9"})
    after = datetime.now(UTC)
    records = _records(server.log())
    assert records
    for record in records:
        stamp = datetime.fromisoformat(record["time"])
        assert stamp.utcoffset() == timedelta(hours=9), record
        assert before - timedelta(seconds=1) <= stamp <= after  # the same instant, only written in +09:00


def test_tz_offset_hours_sets_the_offset_of_plain_timestamps(tmp_path: Path) -> None:
    server, _, _ = _served(tmp_path, {"TZ_OFFSET_HOURS": "-5.5"})
    lines = [line for line in server.log().splitlines() if " INFO jobworkerp" in line]
    assert lines
    for line in lines:
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}-05:30 INFO ", line), line


def test_log_use_stdout_true_logs_to_stdout_only(tmp_path: Path) -> None:
    server, _, _ = _served(tmp_path, {"LOG_USE_STDOUT": "true"}, split_stderr=True)
    assert "listening on" in server.log()  # stdout
    assert server.stderr_path is not None and server.stderr_path.read_text() == ""


def test_by_default_the_console_log_is_stderr(tmp_path: Path) -> None:
    server, _, _ = _served(tmp_path, {}, split_stderr=True)
    assert server.log() == ""
    assert server.stderr_path is not None and "listening on" in server.stderr_path.read_text()


def test_log_use_stdout_false_logs_to_the_file_only(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    server, _, _ = _served(tmp_path, {"LOG_USE_STDOUT": "false", "LOG_FILE_DIR": str(logs)}, split_stderr=True)
    assert server.log() == ""
    assert server.stderr_path is not None and server.stderr_path.read_text() == ""
    assert "listening on" in (logs / "jobworkerp-all-in-one.log").read_text()
