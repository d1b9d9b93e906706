"""Redis restarts under a steady load in Scalable mode: every process reconnects by itself and no
WITH_BACKUP job is lost. A ledger kept here (not by the server) decides what was lost."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from grpclib.exceptions import GRPCError

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, ServerProcess, connect, run
from tests.chaos.redis_instance import RedisInstance
from tests.scalable.services import scalable_env

pytestmark = pytest.mark.timeout(240)

JOBS = 60
OUTAGE_S = 2.0  # how long Redis stays down (the fault, not a bound on anything)


@dataclass
class Ledger:
    accepted: list[int] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


@dataclass
class Cluster:
    redis: RedisInstance
    front: ServerProcess
    worker: ServerProcess


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    redis = RedisInstance(tmp_path).start()
    with scalable_env() as env:
        env = {**env, "REDIS_URL": redis.url}
        front = ServerProcess(tmp_path, env, mode="grpc-front", name="front").start()
        worker = ServerProcess(tmp_path, env, mode="worker", name="worker").start()
        try:
            yield Cluster(redis, front, worker)
        finally:
            for proc in (front, worker):
                proc.stop()
            redis.stop()


async def _enqueue_steadily(c: Client, worker_id: data.WorkerId, ledger: Ledger, restart: asyncio.Event) -> None:
    i = 0
    while len(ledger.accepted) < JOBS:
        request = svc.JobRequest(worker_id=worker_id, args=bytes(runner_pb.CommandArgs(args=["-c", f"echo j{i}"])))
        i += 1
        try:
            ledger.accepted.append((await c.job.enqueue(request, timeout=30)).id.value)
        except GRPCError as e:  # refused while Redis is down: the client knows, nothing is lost
            ledger.refused.append(f"{e.status.name}: {e.message}")
            await asyncio.sleep(0.1)
        if len(ledger.accepted) == JOBS // 3:
            restart.set()
        await asyncio.sleep(0.01)


async def _results(c: Client, job_ids: list[int]) -> dict[int, list[data.JobResult]]:
    return {job_id: [r async for r in c.job_result.find_list_by_job_id(
        svc.FindListByJobIdRequest(job_id=data.JobId(value=job_id)))] for job_id in job_ids}


def test_a_redis_restart_loses_no_backed_up_job_and_every_process_survives(cluster: Cluster) -> None:
    async def scenario() -> tuple[Ledger, dict[int, list[data.JobResult]]]:
        async with connect(cluster.front.port) as c:
            worker_id = (await c.worker.create(data.WorkerData(
                name="backed", runner_id=data.RunnerId(value=1),
                runner_settings=bytes(runner_pb.CommandRunnerSettings(name="sh")),
                response_type=data.ResponseType.NO_RESULT, queue_type=data.QueueType.WITH_BACKUP,
                store_success=True, store_failure=True))).id
            ledger, restart = Ledger(), asyncio.Event()
            load = asyncio.ensure_future(_enqueue_steadily(c, worker_id, ledger, restart))
            await restart.wait()
            cluster.redis.stop()
            await asyncio.sleep(OUTAGE_S)
            cluster.redis.start()
            await load
            while True:  # every accepted job ends; a lost one keeps this waiting until the timeout
                results = await _results(c, ledger.accepted)
                if all(results.values()):
                    return ledger, results
                await asyncio.sleep(0.2)

    ledger, results = run(scenario(), timeout=200)
    assert cluster.front.proc.poll() is None, cluster.front.log()
    assert cluster.worker.proc.poll() is None, cluster.worker.log()
    statuses = {job_id: [r.data.status for r in rs] for job_id, rs in results.items()}
    assert all(s == [data.ResultStatus.SUCCESS] for s in statuses.values()), statuses
    assert len(ledger.accepted) == JOBS
    # The outage was real, and the front said so the way a client can act on: UNAVAILABLE.
    assert ledger.refused and all(r.startswith("UNAVAILABLE") for r in ledger.refused), ledger.refused
