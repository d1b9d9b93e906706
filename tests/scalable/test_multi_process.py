"""Scalable mode as users run it: one grpc-front and two worker processes sharing the real Redis
and MariaDB, driven over gRPC through the front."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, ServerProcess, connect, run
from tests.scalable.services import scalable_env

pytestmark = pytest.mark.timeout(180)
STORE_ALL = {"store_success": True, "store_failure": True}


@dataclass
class Cluster:
    front: ServerProcess
    workers: list[ServerProcess]
    workdir: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    with scalable_env() as env:
        # Cached worker definitions never expire during the module: a worker that runs an updated
        # definition was told about the update (pushed), it did not re-read an expired entry.
        env = {**env, "WORKER_CACHE_TTL_SECONDS": "86400"}
        front = ServerProcess(workdir, env, mode="grpc-front", name="front").start()
        # WORKER_TAG tells the workers apart in job output: it must be let through to runner hosts.
        tagged = {**env, "RUNNER_ENV_ALLOWLIST": "WORKER_TAG"}
        w1 = ServerProcess(workdir, {**tagged, "WORKER_TAG": "w1", "WORKER_CHANNELS": "only1",
                                     "WORKER_CHANNEL_CONCURRENCIES": "1"}, mode="worker", name="worker1").start()
        w2 = ServerProcess(workdir, {**tagged, "WORKER_TAG": "w2"}, mode="worker", name="worker2").start()
        procs = [front, w1, w2]
        try:
            yield Cluster(front, [w1, w2], workdir)
        finally:
            codes = {p.log_path.name: p.stop() for p in procs}
        for p in procs:
            if p.log_path.name in codes and codes[p.log_path.name] not in (0, -9):
                raise AssertionError(f"{p.log_path.name} exited with {codes[p.log_path.name]}:\n{p.log()}")


def command_worker(name: str, command: str, **kwargs) -> data.WorkerData:
    return data.WorkerData(name=name, runner_id=data.RunnerId(value=1),
                           runner_settings=bytes(runner_pb.CommandRunnerSettings(name=command)), **kwargs)


def args(*argv: str) -> bytes:
    return bytes(runner_pb.CommandArgs(args=list(argv)))


async def listen(c: Client, worker_id: data.WorkerId, job_id: data.JobId, timeout_ms: int = 60_000) -> data.JobResult:
    return await c.job_result.listen(svc.ListenRequest(job_id=job_id, worker_id=worker_id, timeout=timeout_ms))


def test_direct_listen_after_and_no_result_work_across_processes(cluster: Cluster) -> None:
    async def scenario():
        async with connect(cluster.front.port) as c:
            direct = (await c.worker.create(command_worker("mp-direct", "echo",
                                                           response_type=data.ResponseType.DIRECT))).id
            listened = (await c.worker.create(command_worker(
                "mp-listen", "sleep", response_type=data.ResponseType.LISTEN_AFTER, **STORE_ALL))).id
            stored = (await c.worker.create(command_worker("mp-stored", "echo", store_success=True))).id
            direct_reply = await c.job.enqueue(svc.JobRequest(worker_id=direct, args=args("hello", "world")))
            listen_job = (await c.job.enqueue(svc.JobRequest(worker_id=listened, args=args("0.5")))).id
            both = await asyncio.gather(listen(c, listened, listen_job), listen(c, listened, listen_job))
            stored_job = (await c.job.enqueue(svc.JobRequest(worker_id=stored, args=args("kept")))).id
            await listen(c, stored, stored_job)
            by_job = [r async for r in c.job_result.find_list_by_job_id(svc.FindListByJobIdRequest(job_id=stored_job))]
            return direct_reply, both, by_job

    direct_reply, both, by_job = run(scenario())
    assert direct_reply.result.data.output.items == [b"hello world\n"]
    assert [r.data.status for r in both] == [data.ResultStatus.SUCCESS] * 2
    assert [r.data.output.items for r in by_job] == [[b"kept\n"]]


def test_scheduled_and_periodic_jobs_run_on_workers(cluster: Cluster) -> None:
    async def successes(c: Client, job_id: data.JobId) -> list[data.JobResult]:
        results = [r async for r in c.job_result.find_list_by_job_id(svc.FindListByJobIdRequest(job_id=job_id))]
        return sorted((r for r in results if r.data.status == data.ResultStatus.SUCCESS),
                      key=lambda r: r.data.start_time)

    async def scenario():
        async with connect(cluster.front.port) as c:
            later = (await c.worker.create(command_worker("mp-later", "true", **STORE_ALL))).id
            run_at = int(time.time() * 1000) + 1500
            job_id = (await c.job.enqueue(svc.JobRequest(worker_id=later, args=args(), run_after_time=run_at))).id
            scheduled = await listen(c, later, job_id)
            ticker = (await c.worker.create(command_worker("mp-tick", "true", periodic_interval=1000,
                                                           **STORE_ALL))).id
            tick_job = (await c.job.enqueue(svc.JobRequest(worker_id=ticker, args=args()))).id
            while len(await successes(c, tick_job)) < 2:  # noqa: ASYNC110 - stored results are the only signal
                await asyncio.sleep(0.05)
            await c.job.delete(tick_job)
            return run_at, scheduled, await successes(c, tick_job)

    run_at, scheduled, ticks = run(scenario())
    assert scheduled.data.status == data.ResultStatus.SUCCESS
    assert scheduled.data.run_after_time == run_at and scheduled.data.start_time >= run_at  # not early
    # The series stays on its grid (first due time + k s), one run per grid point, none early.
    due = [r.data.run_after_time for r in ticks]
    assert len(due) >= 2 and due == sorted(set(due)), due
    assert all((t - due[0]) % 1000 == 0 for t in due), [t - due[0] for t in due]
    assert all(r.data.start_time >= r.data.run_after_time for r in ticks)


def test_channel_served_by_one_worker_runs_only_there(cluster: Cluster) -> None:
    async def scenario():
        async with connect(cluster.front.port) as c:
            w = (await c.worker.create(command_worker("mp-only1", "sh", channel="only1", **STORE_ALL))).id
            ids = [(await c.job.enqueue(svc.JobRequest(worker_id=w, args=args("-c", "echo $WORKER_TAG")))).id
                   for _ in range(6)]
            return [await listen(c, w, job_id) for job_id in ids]

    results = run(scenario())
    assert {r.data.output.items[0] for r in results} == {b"w1\n"}


def test_worker_update_is_pushed_to_the_workers_caches(cluster: Cluster) -> None:
    """An update is pushed to the workers' caches: with entries that would stay valid for a day,
    both workers run the new definition soon after the update (a missed push would hang here
    until the test's timeout)."""
    async def scenario() -> list[bytes]:
        async with connect(cluster.front.port) as c:
            wd = command_worker("mp-update", "echo", response_type=data.ResponseType.DIRECT)
            worker_id = (await c.worker.create(wd)).id
            request = svc.JobRequest(worker_id=worker_id, args=args("x"))
            for _ in range(4):  # warm both workers' caches with the old definition
                assert (await c.job.enqueue(request)).result.data.output.items == [b"x\n"]
            wd.runner_settings = bytes(runner_pb.CommandRunnerSettings(name="printf"))
            await c.worker.update(data.Worker(id=worker_id, data=wd))
            while (await c.job.enqueue(request)).result.data.output.items != [b"x"]:  # noqa: ASYNC110
                pass  # the change event is on its way to the worker that ran this one
            return [(await c.job.enqueue(request)).result.data.output.items[0] for _ in range(8)]

    assert run(scenario(), timeout=120) == [b"x"] * 8  # every worker now runs the new definition


def test_killing_a_worker_loses_no_job(cluster: Cluster, record_property) -> None:
    runs = cluster.workdir / "runs"
    n = 200

    async def scenario() -> list[list[data.JobResult]]:
        async with connect(cluster.front.port) as c:
            normal = (await c.worker.create(command_worker("mp-normal", "sh", **STORE_ALL))).id
            backup = (await c.worker.create(command_worker("mp-backup", "sh", queue_type=data.QueueType.WITH_BACKUP,
                                                           **STORE_ALL))).id
            jobs = []
            for i in range(n):
                w = normal if i % 2 else backup
                job_id = (await c.job.enqueue(svc.JobRequest(
                    worker_id=w, args=args("-c", f"echo j{i} >> {runs}; sleep 0.05")))).id
                jobs.append((w, job_id))
            while not runs.exists() or len(runs.read_text().split()) < 30:  # noqa: ASYNC110 - jobs' own output
                await asyncio.sleep(0.02)
            cluster.workers[1].proc.kill()  # SIGKILL worker 2 with jobs in flight
            await asyncio.gather(*(listen(c, w, job_id, 120_000) for w, job_id in jobs))
            return [[r async for r in c.job_result.find_list_by_job_id(svc.FindListByJobIdRequest(job_id=job_id))]
                    for _, job_id in jobs]

    per_job = run(scenario(), timeout=170)
    lines = runs.read_text().split()
    duplicates = len(lines) - len(set(lines))
    record_property("duplicate_executions", duplicates)
    print(f"\nkill -9 of one worker with {n} jobs in flight: {duplicates} duplicate execution(s)")
    assert all(any(r.data.status == data.ResultStatus.SUCCESS for r in results) for results in per_job)
    assert set(lines) == {f"j{i}" for i in range(n)}
    assert duplicates <= 8  # only the jobs running at the moment of the kill may run twice


def test_deleting_a_job_cancels_it_on_the_worker_running_it(cluster: Cluster) -> None:
    async def scenario() -> tuple[bool, data.JobResult]:
        async with connect(cluster.front.port) as c:
            w = (await c.worker.create(command_worker(
                "mp-cancel", "sleep", response_type=data.ResponseType.LISTEN_AFTER, **STORE_ALL))).id
            job_id = (await c.job.enqueue(svc.JobRequest(worker_id=w, args=args("60")))).id
            listening = asyncio.ensure_future(listen(c, w, job_id))
            while (await c.job_status.find(job_id)).status != data.JobStatus.RUNNING:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            deleted = (await c.job.delete(job_id)).is_success
            return deleted, await asyncio.wait_for(listening, 20)

    deleted, result = run(scenario())
    assert deleted
    assert result.data.status == data.ResultStatus.CANCELLED
