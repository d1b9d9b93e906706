"""Process-level hardening: a blank AUTH_TOKEN refuses to start, a wrong token is refused while
health stays open, a second stop signal cuts the drain short, and SHUTDOWN_GRACE_MS bounds it —
in both cases the cut-off job goes back to its queue and runs again after a restart.

No time bounds: every wait is for a signal from the server (its log, the job's own files) or the
process's exit, with a generous timeout only as a guard against a hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, run
from tests.procs import process_gone

pytestmark = pytest.mark.timeout(180)
HANG_GUARD_S = 90.0  # only to fail instead of hanging; nothing is expected to take near this


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_auth_token_stops_start_up(tmp_path: Path, blank: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jobworkerp", "all-in-one", "--env-file", str(tmp_path / "none.env")],
        env={"PATH": "/usr/bin:/bin", "AUTH_TOKEN": blank, "SQLITE_DBNAME": str(tmp_path / "db.sqlite3")},
        capture_output=True, timeout=HANG_GUARD_S, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert b"AUTH_TOKEN" in proc.stderr and b"empty" in proc.stderr


def test_a_wrong_token_is_refused_and_health_needs_none(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, {"AUTH_TOKEN": "s3cret"}).start()

    async def scenario() -> tuple[Status, int, int]:
        async with connect(server.port) as c:
            with pytest.raises(GRPCError) as info:
                await c.runner.count(svc.CountCondition(), metadata={"jobworkerp-auth": "s3creT"})
            health = await HealthStub(c.channel).Check(HealthCheckRequest())
            ok = await c.runner.count(svc.CountCondition(), metadata={"jobworkerp-auth": "s3cret"})
            return info.value.status, health.status, ok.total

    try:
        status, health, total = run(scenario())
    finally:
        assert server.stop() == 0, server.log()
    assert status == Status.UNAUTHENTICATED
    assert health == HealthCheckResponse.SERVING
    assert total >= 4
    assert "s3cre" not in server.log()  # neither the token nor the guess is logged


# --- shutdown ------------------------------------------------------------------------------
def start_long_job(server: ServerProcess, tmp_path: Path) -> tuple[data.JobId, Path]:
    """Enqueue a `sleep 600` COMMAND job and wait until it runs; returns its id and pid file."""
    marker = tmp_path / "job.pid"

    async def scenario() -> data.JobId:
        async with connect(server.port) as c:
            worker_id = (await c.worker.create(data.WorkerData(
                name="long", runner_id=data.RunnerId(value=1),
                runner_settings=bytes(runner_pb.CommandRunnerSettings(name="sh")),
                response_type=data.ResponseType.NO_RESULT, store_success=True, store_failure=True))).id
            assert worker_id is not None
            job_id = (await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=bytes(runner_pb.CommandArgs(
                args=["-c", f"echo $$ > {marker}.tmp && mv {marker}.tmp {marker} && exec sleep 600"]))))).id
            assert job_id is not None
            return job_id

    job_id = run(scenario())
    wait_until(marker.exists, "the job to start")
    return job_id, marker


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return process_gone(pid)


def assert_job_runs_again_after_restart(tmp_path: Path, job_id: data.JobId, marker: Path) -> None:
    """The cut-off job was not lost: after a restart it is still there and runs again."""
    marker.unlink()
    second = ServerProcess(tmp_path, {"WORKER_DEFAULT_CONCURRENCY": "1", "SHUTDOWN_GRACE_MS": "1"},
                           name="restarted").start()

    async def scenario() -> tuple[data.JobStatus | None, int]:
        async with connect(second.port) as c:
            status = (await c.job_status.find(job_id)).status
            results = [r async for r in c.job_result.find_list_by_job_id(svc.FindListByJobIdRequest(job_id=job_id))]
            return status, len(results)

    try:
        status, results = run(scenario())
        wait_until(marker.exists, "the job to run again")
    finally:
        assert second.stop(timeout=HANG_GUARD_S) == 0, second.log()
    assert status in (data.JobStatus.PENDING, data.JobStatus.RUNNING)
    assert results == 0  # it never ended: no result was stored for it


def test_a_second_signal_cuts_the_drain_short_and_the_job_goes_back(tmp_path: Path) -> None:
    # SHUTDOWN_GRACE_MS=0: the drain would wait for the 600 s job forever; only the second
    # signal can end it.
    server = ServerProcess(tmp_path, {"WORKER_DEFAULT_CONCURRENCY": "1", "SHUTDOWN_GRACE_MS": "0"}).start()
    assert server.proc is not None
    job_id, marker = start_long_job(server, tmp_path)
    job_pid = int(marker.read_text())

    server.terminate()
    wait_until(lambda: "waiting for 1 running job" in server.log(), "the drain to begin")
    assert server.alive() and not gone(job_pid)  # draining, and the job still runs
    server.proc.send_signal(signal.SIGTERM)
    assert server.stop(timeout=HANG_GUARD_S) == 0, server.log()

    log = server.log()
    assert "a second stop signal; cancelling 1 running job(s)" in log
    assert "kept 1 queued job(s) in the database" in log  # released, then parked for the restart
    wait_until(lambda: gone(job_pid), "the job's process to be killed")
    assert_job_runs_again_after_restart(tmp_path, job_id, marker)


def test_shutdown_grace_bounds_the_drain_and_the_job_goes_back(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, {"WORKER_DEFAULT_CONCURRENCY": "1", "SHUTDOWN_GRACE_MS": "200"}).start()
    job_id, marker = start_long_job(server, tmp_path)
    job_pid = int(marker.read_text())

    assert server.stop(timeout=HANG_GUARD_S) == 0, server.log()  # one SIGTERM only

    log = server.log()
    assert "SHUTDOWN_GRACE_MS=200; cancelling 1 running job(s)" in log
    assert "kept 1 queued job(s) in the database" in log
    wait_until(lambda: gone(job_pid), "the job's process to be killed")
    assert_job_runs_again_after_restart(tmp_path, job_id, marker)


def test_the_sqlite_database_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        server = ServerProcess(tmp_path).start()
    finally:
        os.umask(old)
    assert server.stop() == 0
    assert (tmp_path / "jobworkerp.sqlite3").stat().st_mode & 0o777 == 0o600

