"""The orphan sweep ends what a process left half done when it died between two steps.

The crash windows are recreated by writing the stores directly, exactly as a SIGKILL would have
left them (the sweep's Redis scripts have their own conformance tests in tests/storage_bundle);
time is virtual, so the grace period costs nothing.
"""

from __future__ import annotations

import pytest
import trio

from jobworkerp.clock import now_ms
from jobworkerp.lifecycle.orphans import OrphanSweep
from jobworkerp.proto.jobworkerp import data
from tests.worker.harness import running_system

pytestmark = pytest.mark.timeout(30)

GRACE_MS = 10_000
STORE_ALL = {"store_success": True, "store_failure": True}


async def test_orphans_are_ended_after_the_grace_period_and_live_jobs_are_not(autojump_clock) -> None:
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        app, storage = s.app, s.app.storage
        worker = await s.worker("w", **STORE_ALL)
        sweep = OrphanSweep(app.lifecycle, app.running, grace_ms=GRACE_MS)

        # 1. Its ending stored the result and deleted the row, then the process died before the
        #    settle step: status and uniq_key are left, the result is stored.
        finished = 9_001
        stored = app.lifecycle.result_of(
            data.Job(id=data.JobId(value=finished), data=data.JobData(worker_id=worker, args=b"x")),
            await app.workers.get(worker.value), data.ResultStatus.SUCCESS, [b"done"], now_ms())
        await storage.repo.add_results([stored])
        await storage.status.set(finished, data.JobStatus.RUNNING)
        await storage.uniq_keys.acquire("k-finished", finished)
        # 2. Died in the middle of a Delete: a status and nothing else.
        lost = 9_002
        await storage.status.set(lost, data.JobStatus.PENDING)
        # 3. Died after taking a uniq_key, before the job was placed: a key without a status.
        unplaced = 9_003
        await storage.uniq_keys.acquire("k-unplaced", unplaced)
        # A live job that waits far ahead (a row) must not be touched.
        live = await s.enqueue(worker, b"later", run_after_time=now_ms() + 3_600_000, uniq_key="k-live")

        async with storage.bus.listen_job(finished) as w_finished, storage.bus.listen_job(lost) as w_lost:
            assert await sweep.sweep() == 0  # suspects are remembered, nothing is ended yet
            await trio.sleep(GRACE_MS / 2000)
            assert await sweep.sweep() == 0  # half the grace period: still not
            assert await storage.status.get(lost) == data.JobStatus.PENDING
            await trio.sleep(GRACE_MS / 1000)
            assert await sweep.sweep() == 3
            got = await w_finished.wait()
            assert got.id == stored.id and got.data.status == data.ResultStatus.SUCCESS  # its own result
            fatal = await w_lost.wait()
            assert fatal.data.status == data.ResultStatus.FATAL_ERROR
            assert b"lost between two steps" in fatal.data.output.items[0]

        assert await storage.status.get(finished) is None and await storage.status.get(lost) is None
        for key, job_id in (("k-finished", 1), ("k-unplaced", 2)):
            assert await storage.uniq_keys.acquire(key, job_id) is None  # freed
        assert await storage.uniq_keys.acquire("k-live", 3) == live  # still held by the live job
        assert await app.jobs.status(live) == data.JobStatus.PENDING
        assert await sweep.sweep() == 0


async def test_a_job_held_again_within_the_grace_period_is_left_alone(autojump_clock) -> None:
    """Something that looked orphaned for a moment (a step in progress) is not ended."""
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        app, storage = s.app, s.app.storage
        sweep = OrphanSweep(app.lifecycle, app.running, grace_ms=GRACE_MS)
        await storage.status.set(9_100, data.JobStatus.PENDING)  # e.g. accepted, not yet pushed
        assert await sweep.sweep() == 0
        worker = await s.worker("w2", **STORE_ALL)
        await storage.repo.create_job(data.Job(id=data.JobId(value=9_100), data=data.JobData(
            worker_id=worker, args=b"x", run_after_time=now_ms() + 3_600_000)))  # now placed
        await trio.sleep(2 * GRACE_MS / 1000)
        assert await sweep.sweep() == 0
        assert await storage.status.get(9_100) == data.JobStatus.PENDING


async def test_a_job_stranded_on_its_backup_row_is_queued_again_and_runs_once(autojump_clock) -> None:
    """Found by the soak (seed 130266, Scalable): SIGKILL after an Enqueue wrote a WITH_BACKUP
    job's row but before it pushed the job to its queue. The row says "instant", so no due-job
    fetcher claims it, and nothing pops it: PENDING for good. The sweep queues it again."""
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        app, storage = s.app, s.app.storage
        worker = await s.worker("backed", queue_type=data.QueueType.WITH_BACKUP, **STORE_ALL)
        sweep = OrphanSweep(app.lifecycle, app.running, grace_ms=GRACE_MS)
        stranded = 9_200
        await storage.status.set(stranded, data.JobStatus.PENDING, confirm=True)
        await storage.repo.create_job(data.Job(id=data.JobId(value=stranded), data=data.JobData(
            worker_id=worker, args=b"stranded", run_after_time=0)))
        async with storage.bus.listen_job(stranded) as waiter:
            assert await sweep.sweep() == 0
            await trio.sleep(2 * GRACE_MS / 1000)
            assert await sweep.sweep() == 1
            result = await waiter.wait()
        await trio.sleep(GRACE_MS / 1000)
        assert await sweep.sweep() == 0
        assert await storage.repo.find_job(stranded) is None and await app.jobs.status(stranded) is None
        runs = [c for c in s.pool.calls if c.args == b"stranded"]
    assert result.data.status == data.ResultStatus.SUCCESS and list(result.data.output.items) == [b"stranded+"]
    assert len(runs) == 1


async def test_a_waiting_job_of_a_worker_deleted_halfway_is_ended(autojump_clock) -> None:
    """Found by the soak (seed 410793, Scalable): a worker Delete reached a stopping server,
    which deleted the worker and then could not end its waiting jobs. A scheduled job of that
    worker kept its row and PENDING status for good: the due-job fetchers only look at rows of
    existing workers. The sweep ends it as the Delete would have."""
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        app, storage = s.app, s.app.storage
        worker = await s.worker("deleted-halfway", **STORE_ALL)
        sweep = OrphanSweep(app.lifecycle, app.running, grace_ms=GRACE_MS)
        later = await s.enqueue(worker, b"later", run_after_time=now_ms() + 3_600_000)
        assert await storage.repo.delete_worker(worker.value)  # the Delete's first step, and no more
        app.workers.forget(worker.value)
        async with storage.bus.listen_job(later) as waiter:
            assert await sweep.sweep() == 0
            await trio.sleep(2 * GRACE_MS / 1000)
            assert await sweep.sweep() == 1
            result = await waiter.wait()
        assert await storage.repo.find_job(later) is None and await app.jobs.status(later) is None
    assert result.data.status == data.ResultStatus.FATAL_ERROR
    assert b"was deleted" in result.data.output.items[0]
    assert s.pool.calls == []
