"""Server-level behaviour: health, reflection, auth token, graceful shutdown, config errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.reflection.v1.reflection_grpc import ServerReflectionStub
from grpclib.reflection.v1.reflection_pb2 import ServerReflectionRequest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, run

pytestmark = pytest.mark.timeout(60)


def test_health_and_reflection_are_served(server: ServerProcess) -> None:
    async def scenario() -> tuple[int, list[str]]:
        async with connect(server.port) as c:
            health = await HealthStub(c.channel).Check(HealthCheckRequest())
            async with ServerReflectionStub(c.channel).ServerReflectionInfo.open() as stream:
                await stream.send_message(ServerReflectionRequest(list_services=""), end=True)
                reply = await stream.recv_message()
            return health.status, [s.name for s in reply.list_services_response.service]

    health, services = run(scenario())
    assert health == HealthCheckResponse.SERVING
    for name in ("RunnerService", "WorkerService", "JobService", "JobStatusService", "JobRestoreService",
                 "JobResultService"):
        assert f"jobworkerp.service.{name}" in services


def test_sigterm_lets_the_running_job_finish_and_deliver(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()

    async def scenario() -> data.JobResult:
        async with connect(server.port) as c:
            worker_id = (await c.worker.create(data.WorkerData(
                name="slow", runner_id=data.RunnerId(value=1),
                runner_settings=bytes(runner_pb.CommandRunnerSettings(name="sh")),
                response_type=data.ResponseType.LISTEN_AFTER, store_success=True, store_failure=True))).id
            marker = tmp_path / "started"
            job_id = (await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=bytes(runner_pb.CommandArgs(
                args=["-c", f"touch {marker}; sleep 1; echo done"]))))).id
            listen = asyncio.ensure_future(c.job_result.listen(svc.ListenRequest(
                job_id=job_id, worker_id=worker_id, timeout=30_000)))
            while not marker.exists():  # noqa: ASYNC110 - the job's own side effect is the only signal
                await asyncio.sleep(0.02)
            server.terminate()
            return await listen

    try:
        result = run(scenario())
    finally:
        code = server.stop()
    assert result.data.status == data.ResultStatus.SUCCESS
    assert result.data.output.items == [b"done\n"]
    assert code == 0, server.log()


def test_sigterm_keeps_queued_jobs_and_a_restart_runs_them(tmp_path: Path) -> None:
    """Standalone queues live in memory: a graceful stop parks the jobs still queued as rows, so
    none of them is lost; the next start runs each one exactly once."""
    env = {"WORKER_DEFAULT_CONCURRENCY": "1"}
    first = ServerProcess(tmp_path, env).start()
    marker, gate = tmp_path / "started", tmp_path / "gate"

    async def enqueue() -> tuple[data.WorkerId, list[data.JobId]]:
        async with connect(first.port) as c:
            worker_id = (await c.worker.create(data.WorkerData(
                name="queued", runner_id=data.RunnerId(value=1),
                runner_settings=bytes(runner_pb.CommandRunnerSettings(name="sh")),
                response_type=data.ResponseType.NO_RESULT, store_success=True, store_failure=True))).id
            blocker = (await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=bytes(runner_pb.CommandArgs(
                args=["-c", f"touch {marker}; while [ ! -e {gate} ]; do sleep 0.02; done; echo blocker"]))))).id
            queued = [(await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=bytes(runner_pb.CommandArgs(
                args=["-c", f"echo queued-{i}"]))))).id for i in range(3)]
            while not marker.exists():  # noqa: ASYNC110 - the job's own side effect is the only signal
                await asyncio.sleep(0.02)
            return worker_id, [blocker, *queued]

    try:
        worker_id, job_ids = run(enqueue())
        first.terminate()  # the blocker still runs: the queued jobs cannot have started
        while "shutting down" not in first.log():  # fetchers stop right after this line
            time.sleep(0.02)
        gate.touch()
    finally:
        gate.touch()
        assert first.stop() == 0, first.log()
    second = ServerProcess(tmp_path, env, name="restarted").start()

    async def outputs() -> list[list[bytes]]:
        async with connect(second.port) as c:
            finals = [await c.job_result.listen(svc.ListenRequest(job_id=job_id, worker_id=worker_id, timeout=30_000))
                      for job_id in job_ids]
            by_job = c.job_result.find_list_by_job_id
            counts = [len([r async for r in by_job(svc.FindListByJobIdRequest(job_id=job_id))]) for job_id in job_ids]
        assert counts == [1, 1, 1, 1]  # each ran exactly once
        return [list(r.data.output.items) for r in finals]

    try:
        got = run(outputs())
    finally:
        second.stop()
    assert got == [[b"blocker\n"], [b"queued-0\n"], [b"queued-1\n"], [b"queued-2\n"]]


def test_a_stopping_server_refuses_new_jobs(tmp_path: Path) -> None:
    """Once a stop has begun, an Enqueue on a connection that is still open is refused with
    UNAVAILABLE: accepted then, the job could land in a memory queue after the queues were kept
    for the restart, and be lost although its client got an id (found by the soak)."""
    server = ServerProcess(tmp_path, {"WORKER_DEFAULT_CONCURRENCY": "1"}).start()
    marker, gate = tmp_path / "started", tmp_path / "gate"

    async def scenario() -> GRPCError:
        async with connect(server.port) as c:
            worker_id = (await c.worker.create(data.WorkerData(
                name="busy", runner_id=data.RunnerId(value=1),
                runner_settings=bytes(runner_pb.CommandRunnerSettings(name="sh")),
                response_type=data.ResponseType.NO_RESULT))).id
            await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=bytes(runner_pb.CommandArgs(
                args=["-c", f"touch {marker}; while [ ! -e {gate} ]; do sleep 0.02; done"]))))
            while not marker.exists():  # noqa: ASYNC110 - the job's own side effect is the only signal
                await asyncio.sleep(0.02)
            server.terminate()  # the stop waits for the running job, which waits for the gate
            while "shutting down" not in server.log():  # noqa: ASYNC110 - the server's log is the signal
                await asyncio.sleep(0.02)
            try:
                await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=bytes(runner_pb.CommandArgs(
                    args=["-c", "echo late"]))))
            except GRPCError as e:
                return e
            finally:
                gate.touch()
            raise AssertionError("a stopping server accepted a new job")

    try:
        refused = run(scenario())
    finally:
        gate.touch()
        code = server.stop()
    assert refused.status == Status.UNAVAILABLE and "stopping" in (refused.message or "")
    assert code == 0, server.log()


def test_auth_token_is_required_when_configured(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, {"AUTH_TOKEN": "s3cret"}).start()

    async def scenario() -> tuple[Status, int]:
        async with connect(server.port) as c:
            with pytest.raises(GRPCError) as info:
                await c.runner.count(svc.CountCondition())
            ok = await c.runner.count(svc.CountCondition(), metadata={"jobworkerp-auth": "s3cret"})
            return info.value.status, ok.total

    try:
        status, total = run(scenario())
    finally:
        server.stop()
    assert status == Status.UNAUTHENTICATED
    assert total == 4


def test_malformed_setting_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jobworkerp", "all-in-one", "--env-file", str(tmp_path / "none.env")],
        env={"PATH": "/usr/bin:/bin", "WORKER_DEFAULT_CONCURRENCY": "lots"},
        capture_output=True, timeout=30, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert b"WORKER_DEFAULT_CONCURRENCY" in proc.stderr


def test_standalone_refuses_separate_front_and_worker_processes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jobworkerp", "worker", "--env-file", str(tmp_path / "none.env")],
        env={"PATH": "/usr/bin:/bin"}, capture_output=True, timeout=30, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert b"STORAGE_TYPE" in proc.stderr and b"all-in-one" in proc.stderr


def test_json_logs_go_to_the_log_file_dir(tmp_path: Path) -> None:
    import json

    logs = tmp_path / "logs"
    server = ServerProcess(tmp_path, {"LOG_USE_JSON": "true", "LOG_FILE_DIR": str(logs)}).start()
    assert server.stop() == 0
    lines = (logs / "jobworkerp-all-in-one.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert any("listening on" in r["message"] and r["level"] == "INFO" for r in records)
