"""Scalable: a grpc-front has no runner hosts of its own, so ChannelInfoService.FindAll answers
from the reports its worker processes publish to Redis — summed over the workers, without a
worker that stopped (it withdrew its report) or was killed (its report went stale)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, run
from tests.e2e.test_channel_info import find_all, wait_for_info
from tests.scalable.services import scalable_env

pytestmark = pytest.mark.timeout(300)
DEFAULT = "__default_job_channel__"


def test_the_front_sums_the_live_workers_reports(tmp_path: Path) -> None:
    with scalable_env() as env:
        front = ServerProcess(tmp_path, env, mode="grpc-front", name="front").start()
        w1 = ServerProcess(tmp_path, {**env, "WORKER_CHANNELS": "only1", "WORKER_CHANNEL_CONCURRENCIES": "1"},
                           mode="worker", name="worker1").start()
        w2 = ServerProcess(tmp_path, env, mode="worker", name="worker2").start()
        procs = [front, w1, w2]
        try:
            async def scenario() -> None:
                both = await wait_for_info(front.port, "both workers reported",
                                           lambda infos: DEFAULT in infos and infos[DEFAULT].worker_processes == 2)
                assert both[DEFAULT].concurrency == 4  # WORKER_DEFAULT_CONCURRENCY=2 on each
                assert (both["only1"].concurrency, both["only1"].worker_processes) == (1, 1)
                async with connect(front.port) as c:
                    await c.worker.create(data.WorkerData(
                        name="sci-echo", runner_id=data.RunnerId(value=1), response_type=data.ResponseType.DIRECT,
                        runner_settings=bytes(runner_pb.CommandRunnerSettings(name="echo"))))
                    reply = await c.job.enqueue(svc.JobRequest(worker_name="sci-echo",
                                                               args=bytes(runner_pb.CommandArgs(args=["x"]))))
                    assert reply.result is not None and reply.result.data.status == data.ResultStatus.SUCCESS
                # The worker that ran it keeps its shared host, and says so at its next report.
                await wait_for_info(front.port, "the shared host reported",
                                    lambda infos: infos[DEFAULT].shared_hosts >= 1)

            run(scenario(), timeout=240)
            assert w2.stop() == 0, w2.log()  # withdraws its report on the way out
            one = run(wait_for_info(front.port, "the stopped worker left",
                                    lambda infos: infos[DEFAULT].worker_processes == 1), timeout=240)
            assert one[DEFAULT].concurrency == 2
            assert w1.proc is not None
            w1.proc.kill()  # no withdrawal: its report is dropped once stale
            w1.proc.wait()
            run(wait_for_info(front.port, "the killed worker's report went stale", lambda infos: infos == {}),
                timeout=240)
            assert run(find_all(front.port)) == {}
        finally:
            for p in procs:
                p.stop()
