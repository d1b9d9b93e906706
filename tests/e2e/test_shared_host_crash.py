"""A shared runner host that dies fails exactly the jobs it was running, each saying so, and the
next jobs get a new host (issue 12: a slot is a running job, not a process; crash containment
stays). Found from outside through /proc, as in test_server_kill.py."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, run
from tests.e2e.test_server_kill import _children, _comm, _wait_for

pytestmark = pytest.mark.timeout(300)
HANG_S = 120.0  # hang guard only: no timing is asserted


def test_killing_the_shared_host_fails_only_its_jobs_and_says_so(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, {"WORKER_DEFAULT_CONCURRENCY": "4"}).start()
    assert server.proc is not None
    worker = data.WorkerData(
        name="sh", runner_id=data.RunnerId(value=1), response_type=data.ResponseType.LISTEN_AFTER,
        store_success=True, store_failure=True, runner_settings=bytes(runner_pb.CommandRunnerSettings(name="sh")))

    def args(script: str) -> bytes:
        return bytes(runner_pb.CommandArgs(args=["-c", script]))

    found: dict[str, int] = {}

    def two_sleeps_on_one_host() -> bool:
        for host in _children(server.proc.pid):  # type: ignore[union-attr]
            sleeps = [pid for shell in _children(host) for pid in _children(shell) if _comm(pid) == "sleep"]
            if len(sleeps) == 2:
                found["host"] = host
                return True
        return False

    async def scenario() -> tuple[list[data.JobResult], data.JobResult]:
        async with connect(server.port) as c:
            await c.worker.create(worker)
            jobs = [await c.job.enqueue(svc.JobRequest(worker_name="sh", args=args("sleep 600")))
                    for _ in range(2)]
            # A blocking poll, off the client's event loop.
            await asyncio.to_thread(_wait_for, "two jobs never ran at once on one host", two_sleeps_on_one_host)
            os.kill(found["host"], signal.SIGKILL)
            crashed = [(await c.job_result.listen(svc.ListenRequest(job_id=job.id, worker_name="sh"))).data
                       for job in jobs]
            after = await c.job.enqueue(svc.JobRequest(worker_name="sh", args=args("echo after")))
            fine = (await c.job_result.listen(svc.ListenRequest(job_id=after.id, worker_name="sh"))).data
            return crashed, fine

    try:
        crashed, fine = run(scenario(), timeout=HANG_S * 2)
    finally:
        server.stop()
    for result in crashed:
        assert result.status in (data.ResultStatus.ERROR_AND_RETRY, data.ResultStatus.MAX_RETRY), result
        message = result.output.items[0].decode()
        assert f"runner host (pid {found['host']})" in message and "SIGKILL" in message, message
    assert fine.status == data.ResultStatus.SUCCESS and fine.output.items == [b"after\n"]
