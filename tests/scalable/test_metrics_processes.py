"""Scalable: each process serves its own /metrics — the grpc-front counts the jobs it accepted and
the calls it answered, the worker the jobs it ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, free_port, run
from tests.e2e.metrics_client import scrape, wait_for_samples
from tests.scalable.services import scalable_env

pytestmark = pytest.mark.timeout(180)
DEFAULT = "__default_job_channel__"
ENQUEUE = "/jobworkerp.service.JobService/Enqueue"


def test_the_front_and_the_worker_each_count_their_part(tmp_path: Path) -> None:
    front_port, worker_port = free_port(), free_port()
    with scalable_env() as env:
        front = ServerProcess(tmp_path, {**env, "METRICS_ADDR": f"127.0.0.1:{front_port}"}, mode="grpc-front",
                              name="front").start()
        worker = ServerProcess(tmp_path, {**env, "METRICS_ADDR": f"127.0.0.1:{worker_port}"}, mode="worker",
                               name="worker").start()
        try:
            async def scenario() -> list[data.ResultStatus]:
                async with connect(front.port) as c:
                    await c.worker.create(data.WorkerData(
                        name="sm-echo", runner_id=data.RunnerId(value=1), response_type=data.ResponseType.DIRECT,
                        runner_settings=bytes(runner_pb.CommandRunnerSettings(name="echo"))))
                    replies = [await c.job.enqueue(svc.JobRequest(
                        worker_name="sm-echo", args=bytes(runner_pb.CommandArgs(args=[str(i)])))) for i in range(3)]
                    return [reply.result.data.status for reply in replies]

            assert run(scenario()) == [data.ResultStatus.SUCCESS] * 3
            ran = wait_for_samples(worker_port, "three jobs finished on the worker", lambda s: s.get(
                "jobworkerp_jobs_finished_total", worker="sm-echo", channel=DEFAULT, status="SUCCESS") == 3)
            accepted = scrape(front_port)
        finally:
            codes = [front.stop(), worker.stop()]
    assert codes == [0, 0]

    assert accepted.get("jobworkerp_jobs_enqueued_total", worker="sm-echo", channel=DEFAULT) == 3
    assert accepted.get("jobworkerp_grpc_calls_total", method=ENQUEUE, code="OK") == 3
    assert not accepted.labelled("jobworkerp_jobs_started_total")
    assert not accepted.labelled("jobworkerp_jobs_finished_total")
    assert not accepted.labelled("jobworkerp_running_jobs")  # a front runs no jobs, and has no runner hosts
    assert not accepted.labelled("jobworkerp_runner_host_restarts_total")

    assert ran.get("jobworkerp_jobs_started_total", worker="sm-echo", channel=DEFAULT) == 3
    assert ran.get("jobworkerp_job_duration_seconds_count", worker="sm-echo", channel=DEFAULT) == 3
    assert ran.get("jobworkerp_running_jobs", channel=DEFAULT) == 0
    assert not ran.labelled("jobworkerp_jobs_enqueued_total") and not ran.labelled("jobworkerp_grpc_calls_total")
    # The queue is shared (Redis): both processes report its depth.
    for samples in (accepted, ran):
        assert samples.get("jobworkerp_queue_depth", channel=DEFAULT, priority="MEDIUM") == 0
