"""Restore (issue 10, scenario 4): WITH_BACKUP jobs whose queue entries vanished with a Redis
FLUSHALL come back exactly once — through `JobRestoreService.Restore` (called again, and
concurrently from two fronts) or `STORAGE_RESTORE_AT_STARTUP` — and `FindAll` lists exactly the
lost ones. The ledger is the test's: the job ids Enqueue returned, and a file every run appends
its tag to (tests/chaos/cluster.py), so "ran twice" is counted outside the server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, ServerProcess, connect, run
from tests.chaos.cluster import Cluster, eventually, ledger_args, ledger_worker, private_cluster, results_of

pytestmark = pytest.mark.timeout(300)

JOBS = 30
RACED_JOBS = 6  # few jobs, so every copy of each is taken at once
RESTORES = 16
PARTIAL_JOBS = 10  # concurrent Restore calls, half through each front
LATER = "later"  # a channel no process serves until the test starts a worker for it


@dataclass
class Ledger:
    """Job id -> tag of every job Enqueue accepted."""

    tags: dict[int, str] = field(default_factory=dict)


@dataclass
class Verdict:
    sent: int
    completed: int
    lost: list[str]
    duplicated: dict[str, int]

    def __str__(self) -> str:
        return (f"sent {self.sent}, completed {self.completed}, lost {len(self.lost)}, "
                f"duplicated {len(self.duplicated)} (lost: {self.lost[:5]}, duplicated runs: {self.duplicated})")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with private_cluster(tmp_path) as c:
        yield c


async def _enqueue_backed(c: Client, cluster: Cluster, name: str, *, jobs: int = JOBS, channel: str | None = None,
                          work_s: float = 0.0, gate: Path | None = None, uniq: bool = False) -> Ledger:
    worker_id = (await c.worker.create(ledger_worker(name, queue_type=data.QueueType.WITH_BACKUP,
                                                     channel=channel))).id
    ledger = Ledger()
    for i in range(jobs):
        tag = f"{name}-{i}"
        reply = await c.job.enqueue(svc.JobRequest(worker_id=worker_id, uniq_key=tag if uniq else None,
                                                   args=ledger_args(cluster, tag, work_s=work_s, gate=gate)))
        ledger.tags[reply.id.value] = tag
    return ledger


async def _lost_ids(c: Client) -> set[int]:
    """What FindAll says needs restoring."""
    return {job.id.value async for job in c.job_restore.find_all(svc.JobRestoreRequest())}


async def _enqueue_duplicate(c: Client, ledger: Ledger, channel: str | None) -> str:
    """Enqueue a job with the uniq_key of the first job of the ledger (its tag) to a NORMAL
    worker — no row, so the job table's unique index cannot refuse it: only the key can. The
    answer's status name; accepted, it would be another job, kept out of the ledger's counts."""
    tag = next(iter(ledger.tags.values()))
    worker_id = (await c.worker.create(ledger_worker(f"{tag}-duplicate", channel=channel))).id
    try:
        await c.job.enqueue(svc.JobRequest(worker_id=worker_id, uniq_key=tag, args=b""))
    except GRPCError as e:
        return e.status.name
    return "OK"


def _flush(cluster: Cluster) -> None:
    """Redis loses everything: queue entries, statuses, in-flight records (rows stay in MariaDB)."""
    client = cluster.redis_client()
    try:
        client.flushall()
    finally:
        client.close()


async def _settle(c: Client, cluster: Cluster, ledger: Ledger) -> dict[int, list[data.JobResult]]:
    """Wait until every job has a result, no status is left and Redis holds nothing that could
    still run: from then on the counts cannot change."""
    async def probe() -> tuple[dict[int, list[data.JobResult]], bool]:
        results = {job_id: await results_of(c, job_id) for job_id in ledger.tags}
        statuses = [s async for s in c.job_status.find_all(data.Empty())]
        return results, not statuses and cluster.queue_is_empty()

    results, _ = await eventually(probe, lambda v: all(v[0].values()) and v[1])
    return results


def _verdict(cluster: Cluster, ledger: Ledger, results: dict[int, list[data.JobResult]]) -> Verdict:
    runs = cluster.runs()
    lost = [tag for job_id, tag in ledger.tags.items() if not runs[tag] or not results[job_id]]
    duplicated = {tag: max(runs[tag], len(results[job_id])) for job_id, tag in ledger.tags.items()
                  if runs[tag] > 1 or len(results[job_id]) > 1}
    completed = len([job_id for job_id in ledger.tags
                     if [r.data.status for r in results[job_id]] == [data.ResultStatus.SUCCESS]])
    verdict = Verdict(len(ledger.tags), completed, lost, duplicated)
    print(f"\nrestore ledger: {verdict}")
    return verdict


def _assert_exactly_once(verdict: Verdict) -> None:
    assert not verdict.lost and not verdict.duplicated and verdict.completed == verdict.sent, str(verdict)


def test_restore_brings_back_every_flushed_job_once_and_find_all_lists_only_lost_ones(cluster: Cluster) -> None:
    """The front serves no channel but the default one, and the jobs wait on another: FindAll
    must still tell queued jobs from lost ones. Restore called a second time queues nothing."""
    front = cluster.start("grpc-front", "front")

    async def scenario() -> tuple[Ledger, set[int], set[int], set[int], str, dict[int, list[data.JobResult]]]:
        async with connect(front.port) as c:
            ledger = await _enqueue_backed(c, cluster, "restored", channel=LATER, uniq=True)
            while_queued = await _lost_ids(c)
            _flush(cluster)
            after_flush = await _lost_ids(c)
            await c.job_restore.restore(svc.JobRestoreRequest())
            after_restore = await _lost_ids(c)
            await c.job_restore.restore(svc.JobRestoreRequest())
            duplicate = await _enqueue_duplicate(c, ledger, LATER)
            cluster.start("worker", "worker", WORKER_CHANNELS=LATER, WORKER_CHANNEL_CONCURRENCIES="2")
            return ledger, while_queued, after_flush, after_restore, duplicate, await _settle(c, cluster, ledger)

    ledger, while_queued, after_flush, after_restore, duplicate, results = run(scenario(), timeout=240)
    assert while_queued == set(), "FindAll listed jobs that were still queued"
    assert after_flush == set(ledger.tags)
    assert after_restore == set()
    assert duplicate == Status.ALREADY_EXISTS.name, "a restored job's uniq_key was free"
    _assert_exactly_once(_verdict(cluster, ledger, results))


def _drop_queues_only(cluster: Cluster) -> None:
    """Redis loses the queue entries but keeps the job statuses (part of its data: an AOF tail)."""
    client = cluster.redis_client()
    try:
        keys = client.keys(f"{cluster.prefix}queue*")
        assert keys, "nothing was queued"
        client.delete(*keys)
    finally:
        client.close()


def test_jobs_whose_queue_entries_alone_were_lost_are_restored_once_a_claim_lease_has_passed(
        cluster: Cluster) -> None:
    """A job with a status and a row but nothing queued may be an Enqueue about to push, so it is
    not restored at once; once it is older than a claim lease it is lost and comes back once."""
    env = {"JOB_QUEUE_CLAIM_LEASE_MS": "2000"}
    front = cluster.start("grpc-front", "front", **env)

    async def scenario() -> tuple[Ledger, set[int], dict[int, list[data.JobResult]]]:
        async with connect(front.port) as c:
            ledger = await _enqueue_backed(c, cluster, "partial", jobs=PARTIAL_JOBS)
            _drop_queues_only(cluster)
            listed = await eventually(lambda: _lost_ids(c), lambda ids: ids == set(ledger.tags))
            await c.job_restore.restore(svc.JobRestoreRequest())
            cluster.start("worker", "worker", **env)
            return ledger, listed, await _settle(c, cluster, ledger)

    ledger, listed, results = run(scenario(), timeout=240)
    assert listed == set(ledger.tags)
    _assert_exactly_once(_verdict(cluster, ledger, results))


def _start_together(cluster: Cluster, names: list[str], **env: str) -> list[ServerProcess]:
    """Start worker processes at the same moment (each start waits until its process serves), so
    their start-up restores overlap."""
    procs: list[ServerProcess] = []
    errors: list[BaseException] = []

    def start(name: str) -> None:
        try:
            procs.append(cluster.start("worker", name, **env))
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=start, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return procs


def test_restore_at_startup_of_two_workers_brings_back_every_flushed_job_once(cluster: Cluster) -> None:
    front = cluster.start("grpc-front", "front")

    async def enqueue_and_flush() -> tuple[Ledger, set[int]]:
        async with connect(front.port) as c:
            ledger = await _enqueue_backed(c, cluster, "at-start", work_s=0.2)
            _flush(cluster)
            return ledger, await _lost_ids(c)

    ledger, lost = run(enqueue_and_flush(), timeout=120)
    assert lost == set(ledger.tags)
    _start_together(cluster, ["worker1", "worker2"], STORAGE_RESTORE_AT_STARTUP="true")

    async def settle() -> dict[int, list[data.JobResult]]:
        async with connect(front.port) as c:
            return await _settle(c, cluster, ledger)

    _assert_exactly_once(_verdict(cluster, ledger, run(settle(), timeout=180)))


def test_concurrent_restores_from_two_fronts_queue_no_job_twice(cluster: Cluster) -> None:
    """Restores racing each other while a worker already takes the jobs the first one queued: a
    restore working from a list read before another queued a job must not queue it again. The
    jobs wait on a gate and the worker has a slot for every copy, so a job queued twice is taken
    twice at once (a copy taken after the first run ended would find its row gone and not run)."""
    fronts = [cluster.start("grpc-front", f"front{i}") for i in (1, 2)]
    gate = cluster.workdir / "gate"

    async def scenario() -> tuple[Ledger, dict[int, list[data.JobResult]]]:
        async with connect(fronts[0].port) as c1, connect(fronts[1].port) as c2:
            ledger = await _enqueue_backed(c1, cluster, "raced", jobs=RACED_JOBS, gate=gate)
            _flush(cluster)
            cluster.start("worker", "worker", WORKER_DEFAULT_CONCURRENCY=str(4 * RACED_JOBS))
            try:
                await asyncio.gather(*(c.job_restore.restore(svc.JobRestoreRequest())
                                       for _ in range(RESTORES // 2) for c in (c1, c2)))
            finally:
                gate.touch()
            return ledger, await _settle(c1, cluster, ledger)

    try:
        ledger, results = run(scenario(), timeout=240)
    finally:
        gate.touch()  # whatever happened, no job stays blocked (the processes must stop)
    _assert_exactly_once(_verdict(cluster, ledger, results))
