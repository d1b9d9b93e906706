"""Scheduling, retries, periodic runs, priority, uniq_key and chains, in virtual time."""

from __future__ import annotations

import pytest
import trio

from jobworkerp.clock import now_ms
from jobworkerp.errors import AlreadyExists
from jobworkerp.proto.jobworkerp import data
from tests.worker.harness import running_system

pytestmark = pytest.mark.timeout(30)

STORE_ALL = {"store_success": True, "store_failure": True}


async def test_scheduled_job_waits_in_the_rdb_and_starts_on_time(autojump_clock) -> None:
    async with running_system() as s:
        w = await s.worker("later", **STORE_ALL)
        run_at = now_ms() + 3000
        job_id = await s.enqueue(w, b"x", run_after_time=run_at)
        waiting = await s.app.jobs.find(job_id)
        assert waiting is not None and waiting.data.run_after_time == run_at
        assert await s.app.jobs.status(job_id) == data.JobStatus.PENDING
        result = await s.listen(w, job_id)
    assert result.data.status == data.ResultStatus.SUCCESS
    assert 0 <= result.data.start_time - run_at < 100
    assert [c.at_ms for c in s.pool.calls] == [result.data.start_time]


async def test_exponential_retry_with_cap_then_max_retry(autojump_clock) -> None:
    policy = data.RetryPolicy(type=data.RetryType.EXPONENTIAL, interval=100, basis=2.0, max_retry=3, max_interval=250)
    async with running_system() as s:
        w = await s.worker("flaky", retry_policy=policy, **STORE_ALL)
        job_id = await s.enqueue(w, b"fail")
        final = await s.listen(w, job_id)
        attempts = sorted(await s.app.results.list_by_job_id(job_id), key=lambda r: r.data.start_time)
    assert final.data.status == data.ResultStatus.MAX_RETRY
    assert [r.data.status for r in attempts] == [data.ResultStatus.ERROR_AND_RETRY] * 3 + [data.ResultStatus.MAX_RETRY]
    assert [r.data.retried for r in attempts] == [0, 1, 2, 3]
    delays = [b.data.start_time - a.data.end_time for a, b in zip(attempts, attempts[1:], strict=False)]
    assert delays == [100, 200, 250]
    assert {r.data.job_id.value for r in attempts} == {job_id}


async def test_long_retry_delay_goes_through_the_rdb_and_is_not_lost(autojump_clock) -> None:
    policy = data.RetryPolicy(type=data.RetryType.CONSTANT, interval=5000, basis=1.0, max_retry=1)
    async with running_system() as s:
        w = await s.worker("slow-retry", retry_policy=policy, **STORE_ALL)
        job_id = await s.enqueue(w, b"fail")
        await trio.sleep(1)  # virtual time: the first attempt ran and failed at once
        assert len(s.pool.calls) == 1
        parked = await s.app.jobs.find(job_id)
        final = await s.listen(w, job_id)
    assert parked is not None and parked.data.retried == 1  # the retry waits as an RDB row
    assert final.data.status == data.ResultStatus.MAX_RETRY and final.data.retried == 1
    assert s.pool.calls[1].at_ms - s.pool.calls[0].at_ms >= 5000


async def test_periodic_worker_keeps_phase_and_stops_after_delete(autojump_clock) -> None:
    async with running_system() as s:
        w = await s.worker("tick", periodic_interval=1500)
        start = now_ms()
        job_id = await s.enqueue(w, b"tick")
        await trio.sleep(5.9)
        runs = [c.at_ms for c in s.pool.calls]
        assert await s.app.jobs.delete(job_id)
        await trio.sleep(6)
        after_delete = len(s.pool.calls)
        gone = await s.app.jobs.find(job_id)
    assert len(runs) == 4
    assert [b - a for a, b in zip(runs, runs[1:], strict=False)] == [1500, 1500, 1500]
    assert runs[0] - start < 100
    assert after_delete == 4 and gone is None


async def test_high_priority_overtakes_queued_low_jobs(autojump_clock) -> None:
    async with running_system(WORKER_CHANNELS="one", WORKER_CHANNEL_CONCURRENCIES="1") as s:
        w = await s.worker("prio", channel="one", **STORE_ALL)
        await s.enqueue(w, b"sleep:1")
        await trio.sleep(0.1)  # the channel is now busy with that job
        low = [await s.enqueue(w, f"low{i}".encode(), priority=data.Priority.LOW) for i in range(20)]
        high = [await s.enqueue(w, f"high{i}".encode(), priority=data.Priority.HIGH) for i in range(3)]
        await s.listen(w, low[-1])
    order = [c.args.decode() for c in s.pool.calls[1:]]
    assert order[:3] == ["high0", "high1", "high2"]
    assert order[3:] == [f"low{i}" for i in range(20)]
    assert len(high) == 3


async def test_uniq_key_is_taken_until_the_job_finishes(autojump_clock) -> None:
    async with running_system() as s:
        w = await s.worker("uniq", **STORE_ALL)
        first = await s.enqueue(w, b"sleep:1", uniq_key="k")
        await trio.sleep(0.1)  # running now, no longer queued
        with pytest.raises(AlreadyExists, match="uniq_key 'k'"):
            await s.enqueue(w, b"x", uniq_key="k")
        await s.listen(w, first)
        second = await s.enqueue(w, b"x", uniq_key="k")
        assert (await s.listen(w, second)).data.status == data.ResultStatus.SUCCESS


async def test_three_worker_chain_delivers_the_last_output(autojump_clock) -> None:
    async with running_system() as s:
        last = await s.worker("last", **STORE_ALL)
        middle = await s.worker("middle", next_workers=[last])
        first = await s.worker("first", next_workers=[middle])
        async with s.app.storage.bus.listen_worker(last.value) as stream:
            await s.enqueue(first, b"x")
            result = await stream.receive()
    assert result.data.output.items == [b"x+++"]
    assert [c.worker_id for c in s.pool.calls] == [first.value, middle.value, last.value]


async def test_failed_job_does_not_chain(autojump_clock) -> None:
    async with running_system() as s:
        nxt = await s.worker("never", **STORE_ALL)
        w = await s.worker("failing", next_workers=[nxt], **STORE_ALL)
        job_id = await s.enqueue(w, b"fail")
        await s.listen(w, job_id)
        await trio.sleep(2)
    assert [c.worker_id for c in s.pool.calls] == [w.value]


async def test_deleting_a_scheduled_job_cancels_it_before_it_runs(autojump_clock) -> None:
    async with running_system() as s:
        w = await s.worker("doomed", **STORE_ALL)
        job_id = await s.enqueue(w, b"x", run_after_time=now_ms() + 3000)
        async with trio.open_nursery() as nursery:
            results = []

            async def listen() -> None:
                results.append(await s.listen(w, job_id))

            nursery.start_soon(listen)
            await trio.sleep(1)
            assert await s.app.jobs.delete(job_id)
        await trio.sleep(5)
    assert results[0].data.status == data.ResultStatus.CANCELLED
    assert s.pool.calls == []


async def test_deleting_a_running_job_cancels_it(autojump_clock) -> None:
    async with running_system() as s:
        w = await s.worker("long", **STORE_ALL)
        job_id = await s.enqueue(w, b"sleep:100")
        await trio.sleep(1)
        assert await s.app.jobs.status(job_id) == data.JobStatus.RUNNING
        assert await s.app.jobs.delete(job_id)
        result = await s.listen(w, job_id)
        assert await s.app.jobs.status(job_id) is None
    assert result.data.status == data.ResultStatus.CANCELLED


async def test_forced_rdb_and_with_backup_jobs_run_and_leave_no_row(autojump_clock) -> None:
    async with running_system() as s:
        forced = await s.worker("forced", queue_type=data.QueueType.FORCED_RDB, **STORE_ALL)
        backup = await s.worker("backup", queue_type=data.QueueType.WITH_BACKUP, **STORE_ALL)
        f_id = await s.enqueue(forced, b"f")
        b_id = await s.enqueue(backup, b"b")
        assert await s.app.jobs.find(f_id) is not None and await s.app.jobs.find(b_id) is not None
        f_res, b_res = await s.listen(forced, f_id), await s.listen(backup, b_id)
        assert await s.app.jobs.find(f_id) is None and await s.app.jobs.find(b_id) is None
    assert f_res.data.output.items == [b"f+"] and b_res.data.output.items == [b"b+"]
    assert len(s.pool.calls) == 2  # the backup row's claim keeps the scheduler from running it twice


async def test_a_job_without_a_timeout_gets_the_servers_default(autojump_clock: object) -> None:
    """JOB_DEFAULT_TIMEOUT_MS stops a job whose request set no timeout (upstream's one year let a
    hung job hold its slot for good); a job's own timeout still wins."""
    async with running_system(JOB_DEFAULT_TIMEOUT_MS="1000") as s:
        w = await s.worker("hangs", store_success=True, store_failure=True)
        hung = await s.enqueue(w, b"sleep:3600")
        own = await s.enqueue(w, b"sleep:2", timeout=5000)
        stopped = await s.listen(w, hung)
        finished = await s.listen(w, own)
    assert b"timed out after 1000 ms" in stopped.data.output.items[0]
    assert finished.data.status == data.ResultStatus.SUCCESS
