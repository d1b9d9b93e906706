"""A job's life under interleavings that used to lose or strand jobs, in virtual time.

Each test is a reproduction of a failure seen on an earlier version: a scheduled job that never
ran at concurrency 1, a queued job that vanished when its worker was updated, and running jobs
killed (and acknowledged as done) by a storage error in the loop that fetched them.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from jobworkerp.clock import now_ms
from jobworkerp.errors import StorageClosed
from jobworkerp.lifecycle.placement import channel_of
from jobworkerp.lifecycle.transitions import TRANSITION_LIMIT_S
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.queue import Ticket
from tests.worker.harness import System, running_system

pytestmark = pytest.mark.timeout(30)

STORE_ALL = {"store_success": True, "store_failure": True}
SUCCESS = data.ResultStatus.SUCCESS


def fail_once(target: Any, method: str, when: Any = None) -> trio.Event:
    """Make `target.method` raise ConnectionError on its first call (that `when` accepts), as a
    storage blip would; the returned event is set once it has failed."""
    real = getattr(target, method)
    failed = trio.Event()

    async def failing_once(*args: Any, **kwargs: Any) -> Any:
        if not failed.is_set() and (when is None or when(*args, **kwargs)):
            failed.set()
            raise ConnectionError(f"{method}: storage blinked")
        return await real(*args, **kwargs)

    setattr(target, method, failing_once)
    return failed


async def wait_until_running(s: System, job_id: int) -> None:
    # Virtual time: polling what a client would see costs nothing and needs no hook in the server.
    while await s.app.jobs.status(job_id) != data.JobStatus.RUNNING:  # noqa: ASYNC110
        await trio.sleep(0.01)


async def test_concurrency_1_runs_scheduled_jobs_while_the_queue_is_empty(autojump_clock: Any) -> None:
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        w = await s.worker("later", **STORE_ALL)
        run_at = now_ms() + 2000
        job_id = await s.enqueue(w, b"x", run_after_time=run_at)
        result = await s.listen(w, job_id)
    assert result.data.status == SUCCESS
    assert result.data.start_time >= run_at


async def test_concurrency_1_runs_delayed_retries_and_periodic_runs(autojump_clock: Any) -> None:
    policy = data.RetryPolicy(type=data.RetryType.CONSTANT, interval=2000, basis=1.0, max_retry=1)
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        flaky = await s.worker("flaky", retry_policy=policy, **STORE_ALL)
        failing = await s.enqueue(flaky, b"fail")
        final = await s.listen(flaky, failing)
        periodic = await s.worker("tick", periodic_interval=1500, **STORE_ALL)
        series = await s.enqueue(periodic, b"p")
        while len(await s.app.results.list_by_job_id(series)) < 3:  # noqa: ASYNC110 - virtual time
            await trio.sleep(0.5)
        assert await s.app.jobs.delete(series)
    assert final.data.status == data.ResultStatus.MAX_RETRY and final.data.retried == 1


async def test_queue_and_due_jobs_share_one_slot_in_turns(autojump_clock: Any) -> None:
    """At concurrency 1 with the queue never empty, due rows still get the slot (no starvation)."""
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        w = await s.worker("busy", **STORE_ALL)
        queued = [await s.enqueue(w, b"sleep:1") for _ in range(6)]
        scheduled = await s.enqueue(w, b"due", run_after_time=now_ms() + 1500)
        result = await s.listen(w, scheduled)
        still_queued = [job_id for job_id in queued if await s.app.jobs.status(job_id) == data.JobStatus.PENDING]
    assert result.data.status == SUCCESS
    assert still_queued, "the due job waited until the whole queue had drained"


async def test_a_queued_job_survives_its_worker_changing_queue_type(autojump_clock: Any) -> None:
    """The job was accepted as NORMAL; a later update to WITH_BACKUP must not strand it."""
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        w = await s.worker("changing", **STORE_ALL)
        blocker = await s.enqueue(w, b"sleep:2")
        waiting = await s.enqueue(w, b"queued")
        await wait_until_running(s, blocker)
        assert await s.app.jobs.find(waiting) is not None  # a queued job is visible
        worker = await s.app.workers.get(w.value)
        assert worker is not None
        worker.data.queue_type = data.QueueType.WITH_BACKUP
        await s.app.workers.update(worker)
        result = await s.listen(w, waiting)
        backed = await s.enqueue(w, b"after-update")
        backed_row = await s.app.storage.repo.find_job(backed)
        backed_result = await s.listen(w, backed)
        assert await s.app.jobs.status(waiting) is None
        assert await s.app.storage.repo.find_job(waiting) is None
    assert result.data.status == SUCCESS and list(result.data.output.items) == [b"queued+"]
    assert backed_row is not None  # jobs accepted after the update get the new queue type
    assert backed_result.data.status == SUCCESS


async def test_a_retried_job_keeps_its_queue_type_across_a_worker_update(autojump_clock: Any) -> None:
    """A WITH_BACKUP job whose worker became NORMAL keeps its backup row through its retries, and
    ends with that row gone: nothing is left for a fetcher to run a second time."""
    policy = data.RetryPolicy(type=data.RetryType.CONSTANT, interval=200, basis=1.0, max_retry=2)
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        w = await s.worker("backed", queue_type=data.QueueType.WITH_BACKUP, retry_policy=policy, **STORE_ALL)
        job_id = await s.enqueue(w, b"fail")
        while not await s.app.results.list_by_job_id(job_id):  # noqa: ASYNC110 - until the first attempt failed
            await trio.sleep(0.01)
        worker = await s.app.workers.get(w.value)
        assert worker is not None
        worker.data.queue_type = data.QueueType.NORMAL
        await s.app.workers.update(worker)
        final = await s.listen(w, job_id)
        await trio.sleep(120)  # several claim leases: a stranded row would have run again
        results = await s.app.results.list_by_job_id(job_id)
        row = await s.app.storage.repo.find_job(job_id)
    assert final.data.status == data.ResultStatus.MAX_RETRY
    assert [r.data.status for r in results].count(data.ResultStatus.MAX_RETRY) == 1
    assert row is None


async def test_a_fetch_error_restarts_only_the_fetcher_and_running_jobs_finish(autojump_clock: Any) -> None:
    async with running_system(WORKER_DEFAULT_CONCURRENCY="2") as s:
        w = await s.worker("steady", **STORE_ALL)
        running = await s.enqueue(w, b"sleep:3")
        await wait_until_running(s, running)
        failed = fail_once(s.app.storage.queue, "pop")
        # Wake the idle fetcher so it pops again (and fails) while the first job is still running.
        nxt = await s.enqueue(w, b"after-the-error")
        await failed.wait()
        first = await s.listen(w, running)
        second = await s.listen(w, nxt)
        assert await s.app.jobs.status(running) is None
    assert first.data.status == SUCCESS and list(first.data.output.items) == [b"slept"]
    assert second.data.status == SUCCESS


async def test_deleting_a_worker_ends_its_waiting_jobs_with_a_result(autojump_clock: Any) -> None:
    async with running_system() as s:
        w = await s.worker("doomed", **STORE_ALL)
        far = await s.enqueue(w, b"x", run_after_time=now_ms() + 3_600_000)
        async with s.app.storage.bus.listen_job(far) as waiter:
            assert await s.app.workers.delete(w.value)
            result = await waiter.wait()
        assert await s.app.jobs.find(far) is None
        assert await s.app.jobs.status(far) is None
    assert result.data.status == data.ResultStatus.FATAL_ERROR
    assert b"was deleted" in result.data.output.items[0]


async def test_a_due_job_waiting_behind_the_queue_fetcher_gets_the_next_slot(autojump_clock: Any) -> None:
    """Concurrency 1: while a job runs, both fetchers wait for the slot, the queue fetcher first.
    When the slot frees it must not sit idle on the empty queue while the due job waits."""
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        w = await s.worker("one-slot", **STORE_ALL)
        running = await s.enqueue(w, b"sleep:3")
        await wait_until_running(s, running)
        due = await s.enqueue(w, b"due", run_after_time=now_ms() + 1000)
        result = await s.listen(w, due)
    assert result.data.status == SUCCESS


async def test_a_job_that_reports_slowly_leaves_its_slot_to_the_next_job(autojump_clock: Any) -> None:
    """Concurrency 1: a job whose settle is held up has finished running, so the next queued job
    runs in the slot meanwhile (a Scalable host idled through every settle round trip). Reporting
    without a slot is bounded by the concurrency: the second job, finding the first still
    reporting, keeps its slot until it has reported, so the third waits."""
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        w = await s.worker("slow-report", **STORE_ALL)
        settler, gate = s.app.storage.settler, trio.Event()
        real_settle = settler.settle

        async def held_settle(*args: Any, **kwargs: Any) -> None:
            await gate.wait()
            await real_settle(*args, **kwargs)

        settler.settle = held_settle  # type: ignore[method-assign]
        jobs = [await s.enqueue(w, f"j{i}".encode()) for i in range(3)]
        await trio.sleep(5)
        ran_while_held = [c.args for c in s.pool.calls]
        gate.set()
        results = [await s.listen(w, job_id) for job_id in jobs]
    assert ran_while_held == [b"j0", b"j1"]
    assert [r.data.status for r in results] == [SUCCESS] * 3
    assert [c.args for c in s.pool.calls] == [b"j0", b"j1", b"j2"]


async def test_a_busy_due_source_does_not_starve_the_queue(autojump_clock: Any) -> None:
    """Concurrency 1 with a due row always waiting (a fast periodic job): queued jobs still run."""
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1", JOB_QUEUE_FETCH_INTERVAL="100") as s:
        series = []
        for name in ("tick", "tock"):  # while one runs, the other's next run is due and waits
            ticking = await s.worker(name, periodic_interval=150, **STORE_ALL)
            series.append(await s.enqueue(ticking, b"sleep:0.2"))
        w = await s.worker("queued", **STORE_ALL)
        queued = [await s.enqueue(w, b"q") for _ in range(3)]
        results = [await s.listen(w, job_id) for job_id in queued]
        for job_id in series:
            assert await s.app.jobs.delete(job_id)
    assert [r.data.status for r in results] == [SUCCESS] * 3


def _retry_status(job_id: int, value: data.JobStatus, *, confirm: bool = False) -> bool:
    return value == data.JobStatus.PENDING and not confirm  # a retry's (only a new job's is confirmed)


@pytest.mark.parametrize(("target", "method", "when", "runs"), [
    # An injected queue.ack fault: the retry was already placed as a row when acknowledging the
    # previous run failed, and the executor released that run back to the queue, so attempt 0
    # ran twice besides its retry. Once placed, the old run is never released.
    ("queue", "ack", None, 2),
    # An injected status.set fault while placing the retry, after the attempt's result was
    # stored: the attempt ran again and the job showed more attempts than its policy allows. Now
    # nothing of the retry is placed before its status and the result is stored only once the
    # retry is placed: the attempt repeats (at-least-once on a storage error), one result each.
    ("status", "set", _retry_status, 3),
], ids=["ack-after-placing", "status-while-placing"])
async def test_a_storage_error_around_placing_a_retry_leaves_one_result_per_attempt(
        autojump_clock: Any, target: str, method: str, when: Any, runs: int) -> None:
    """Both found by the soak with injected faults."""
    policy = data.RetryPolicy(type=data.RetryType.CONSTANT, interval=2000, basis=1.0, max_retry=1)
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        w = await s.worker("blinks", retry_policy=policy, **STORE_ALL)
        failed = fail_once(getattr(s.app.storage, target), method, when)
        job_id = await s.enqueue(w, b"fail")
        final = await s.listen(w, job_id)
        assert failed.is_set()
        attempts = await s.app.storage.repo.list_results_by_job_id(job_id)
    assert final.data.status == data.ResultStatus.MAX_RETRY
    assert sorted((r.data.retried, r.data.status) for r in attempts) == [
        (0, data.ResultStatus.ERROR_AND_RETRY), (1, data.ResultStatus.MAX_RETRY)]
    assert len(s.pool.calls) == runs


async def test_a_delete_during_a_retry_placement_ends_the_job_even_if_a_later_step_fails(
        autojump_clock: Any) -> None:
    """Found by the soak: a Delete reached a job while its retry was being placed (the Delete
    marks it for its holder to end), then acknowledging the previous run failed, the holder gave
    up before ending it, and the job kept a PENDING status with nothing behind it for good."""
    policy = data.RetryPolicy(type=data.RetryType.CONSTANT, interval=2000, basis=1.0, max_retry=1)
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        w = await s.worker("deleted-while-placed", retry_policy=policy, **STORE_ALL)
        repo = s.app.storage.repo
        real_upsert = repo.upsert_job
        deleted = trio.Event()

        async def upsert_then_delete(job: data.Job, extras: bytes = b"") -> None:
            await real_upsert(job, extras)
            if not deleted.is_set():  # the retry's row is written: a client deletes the job now
                deleted.set()
                assert await s.app.jobs.delete(job.id.value)

        repo.upsert_job = upsert_then_delete  # type: ignore[method-assign]
        failed = fail_once(s.app.storage.queue, "ack")
        job_id = await s.enqueue(w, b"fail")
        final = await s.listen(w, job_id)
        assert deleted.is_set() and failed.is_set()
        assert await s.app.jobs.status(job_id) is None
    assert final.data.status == data.ResultStatus.CANCELLED


async def test_a_job_goes_back_even_when_its_status_cannot_be_reset(autojump_clock: Any) -> None:
    """Found by the soak (two injected status.set faults): marking the job RUNNING failed, then
    resetting it to PENDING on the way back failed too, and the job stayed registered as taken
    with nothing running it — for good (a later Delete only marked it). The status is
    informational: the job goes back to its queue and runs."""
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        w = await s.worker("status-blinks-twice", **STORE_ALL)
        status = s.app.storage.status
        running = fail_once(status, "set", lambda job_id, value, *, confirm=False: value == data.JobStatus.RUNNING)
        back = fail_once(status, "set", lambda job_id, value, *, confirm=False:
                         value == data.JobStatus.PENDING and not confirm)
        job_id = await s.enqueue(w, b"hello")
        final = await s.listen(w, job_id)
        assert running.is_set() and back.is_set()
        assert await s.app.jobs.status(job_id) is None
    assert final.data.status == SUCCESS and list(final.data.output.items) == [b"hello+"]


async def test_a_delete_whose_caller_hangs_up_midway_still_ends_the_job(autojump_clock: Any) -> None:
    """Found by the soak (seed 234165): a client's Delete was cut off (the server was stopping)
    after the CANCELLED result was stored but before the job's claimed row was deleted; the row
    survived, and the job ran again once the claim lapsed — two final results for one job."""
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        w = await s.worker("deleted-by-a-leaving-caller", **STORE_ALL)
        job_id = await s.enqueue(w, b"hello", run_after_time=now_ms() + 60_000)
        repo = s.app.storage.repo
        real_delete_job = repo.delete_job
        caller = trio.CancelScope()

        async def hang_up_then_delete_job(job_id: int, **kwargs: Any) -> bool:
            # The CANCELLED result is stored, the row not yet deleted: the caller goes away now.
            caller.cancel()
            await trio.lowlevel.checkpoint()
            return await real_delete_job(job_id, **kwargs)

        repo.delete_job = hang_up_then_delete_job  # type: ignore[method-assign]
        with caller:
            await s.app.jobs.delete(job_id)
        repo.delete_job = real_delete_job  # type: ignore[method-assign]
        assert caller.cancel_called
        await trio.sleep(600)  # past the job's time and any claim's lease
        results = await repo.list_results_by_job_id(job_id)
        assert await repo.find_job(job_id) is None
        assert await s.app.jobs.status(job_id) is None
    assert s.pool.calls == []
    assert [r.data.status for r in results] == [data.ResultStatus.CANCELLED]


async def test_a_job_whose_claim_renewal_lags_is_not_taken_again_by_its_own_process(autojump_clock: Any) -> None:
    """Found by the soak (Scalable, a loaded machine): a FORCED_RDB job's claim lapsed while it
    ran, because renewing it took longer than the lease; the due-job fetcher of the same
    process saw a due row and ran the job a second time, and each copy ended with SUCCESS."""
    async with running_system(WORKER_DEFAULT_CONCURRENCY="2", JOB_QUEUE_CLAIM_LEASE_MS="2000") as s:
        w = await s.worker("slow-renewal", queue_type=data.QueueType.FORCED_RDB, **STORE_ALL)
        repo = s.app.storage.repo
        real_claim_job = repo.claim_job
        lagged = trio.Event()

        async def claim_job(job_id: int, expected: int, grabbed_until: int, **kwargs: Any) -> bool:
            if expected and grabbed_until and not kwargs and not lagged.is_set():  # the first renewal
                lagged.set()
                await trio.sleep(5)  # longer than the lease: the row looks due meanwhile
            return await real_claim_job(job_id, expected, grabbed_until, **kwargs)

        repo.claim_job = claim_job  # type: ignore[method-assign]
        job_id = await s.enqueue(w, b"sleep:10")
        final = await s.listen(w, job_id)
        await trio.sleep(30)  # any second copy would have ended by now
        results = await repo.list_results_by_job_id(job_id)
        assert lagged.is_set()
    assert final.data.status == SUCCESS
    assert [r.data.status for r in results] == [SUCCESS]
    assert len(s.pool.calls) == 1


async def test_a_delete_during_a_retry_placement_does_not_end_a_retry_that_already_ended(
        autojump_clock: Any) -> None:
    """Found by the soak (seed 170334, Scalable, loaded): a Delete marked a job while its retry
    was being placed; the retry was popped and ran to its final result while the placing run
    was still storing its attempt's result; then the placing run, seeing the job nowhere, ended
    it again with CANCELLED — two final results for one job."""
    policy = data.RetryPolicy(type=data.RetryType.CONSTANT, interval=10, basis=1.0, max_retry=1)
    async with running_system(WORKER_DEFAULT_CONCURRENCY="2") as s:
        w = await s.worker("deleted-while-retried", retry_policy=policy, **STORE_ALL)
        status, queue = s.app.storage.status, s.app.storage.queue
        real_set, real_push = status.set, queue.push
        deleted = trio.Event()

        async def set_status(job_id: int, value: Any, *, confirm: bool = False) -> None:
            if value == data.JobStatus.PENDING and not confirm and not deleted.is_set():
                deleted.set()  # the retry is about to be placed: a client deletes the job now
                assert await s.app.jobs.delete(job_id)
            await real_set(job_id, value, confirm=confirm)

        async def slow_push(channel: str, ticket: Any, *, ack: bool = False) -> None:
            await real_push(channel, ticket, ack=ack)
            if deleted.is_set():  # the placing run is slow from here on: the retry ends first
                while await status.get(ticket.job_id) is not None:  # noqa: ASYNC110
                    await trio.sleep(0.01)

        status.set = set_status  # type: ignore[method-assign]
        queue.push = slow_push  # type: ignore[method-assign]
        job_id = await s.enqueue(w, b"fail")
        await deleted.wait()
        await trio.sleep(60)
        results = await s.app.storage.repo.list_results_by_job_id(job_id)
        assert await s.app.jobs.status(job_id) is None
    finals = [r.data.status for r in results if r.data.status != data.ResultStatus.ERROR_AND_RETRY]
    assert len(finals) == 1, finals


async def test_a_periodic_runs_result_reaches_its_waiter_when_one_publish_fails(autojump_clock: Any) -> None:
    """Found by the soak (seed 433140, an injected publish fault): the announcement of a periodic
    run's result failed once, and the caller waiting for that run never got it (a DIRECT caller
    waited until its deadline); the job lives on, so nothing announced that run again."""
    async with running_system() as s:
        w = await s.worker("ticking", periodic_interval=10_000, response_type=data.ResponseType.LISTEN_AFTER,
                           **STORE_ALL)
        failed = fail_once(s.app.storage.bus, "publish")
        job_id = await s.enqueue(w, b"sleep:1")
        first = await s.listen(w, job_id)  # waits: the first run takes a second
        assert failed.is_set()
        stored = await s.app.storage.repo.list_results_by_job_id(job_id)
        assert await s.app.jobs.delete(job_id)
    assert first.data.status == SUCCESS
    assert first.id.value == min(r.id.value for r in stored)  # the first run's, not a later one's


async def test_a_job_whose_result_storage_always_refuses_ends_instead_of_running_forever(autojump_clock: Any) -> None:
    """A run that fails outside its runner goes back to run again (right for a passing fault);
    when the same failure repeats, the job is ended with FATAL_ERROR saying why instead of
    looping for good. Here the database refuses (not an outage) every result of this job."""
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        repo = s.app.storage.repo
        real_add = repo.add_results

        async def refusing_add(results: list[data.JobResult]) -> None:
            if any(b"refused+" in item for r in results for item in r.data.output.items):
                raise ValueError("this result cannot be stored")
            await real_add(results)

        repo.add_results = refusing_add  # type: ignore[method-assign]
        w = await s.worker("stubborn", **STORE_ALL)
        job_id = await s.enqueue(w, b"refused")
        result = await s.listen(w, job_id)
        runs = [c for c in s.pool.calls if c.args == b"refused"]
        status = await s.app.jobs.status(job_id)
    assert result.data.status == data.ResultStatus.FATAL_ERROR
    text = result.data.output.items[0].decode()
    assert "failed outside its runner 3 times" in text and "this result cannot be stored" in text
    assert len(runs) == 3
    assert status is None


async def test_a_retry_placed_as_a_row_leaves_no_queue_record_behind_when_its_ack_fails_once(
        autojump_clock: Any) -> None:
    """A popped job whose retry waits as a row acknowledges its queue entry after placing the
    row. That acknowledgement failing once must not leave the entry in flight: a restart returns
    in-flight entries to their queue (Scalable), and the job, long ended, ran a second time from
    its first attempt (soak seed 798637)."""
    policy = data.RetryPolicy(type=data.RetryType.CONSTANT, interval=2000, basis=1.0, max_retry=1)
    async with running_system(WORKER_DEFAULT_CONCURRENCY="1") as s:
        queue = s.app.storage.queue
        real_ack = queue.ack
        failed = trio.Event()

        async def ack_failing_once(job_id: int) -> None:
            if not failed.is_set():
                failed.set()
                raise RuntimeError("ack refused once")  # not an outage: no backoff-and-wait
            await real_ack(job_id)

        queue.ack = ack_failing_once  # type: ignore[method-assign]
        w = await s.worker("retrying", retry_policy=policy, **STORE_ALL)
        job_id = await s.enqueue(w, b"fail")
        final = await s.listen(w, job_id)
        left = await queue.held([job_id])
    assert failed.is_set()
    assert final.data.status == data.ResultStatus.MAX_RETRY and final.data.retried == 1
    assert left == set(), "an ended job is still recorded in flight: a restart would run it again"


async def test_a_delete_during_a_retry_never_adds_a_second_final_result(autojump_clock: Any) -> None:
    """A Delete lands while a failed attempt places its retry; the retry is popped at once by
    another slot and runs to its final result while the deleted attempt is still looking for
    what it placed (slow storage). Finding nothing left, the attempt must not end the job a
    second time with CANCELLED: the job already has its one final result (soak seed 294454)."""
    policy = data.RetryPolicy(type=data.RetryType.CONSTANT, interval=100, basis=1.0, max_retry=1)
    async with running_system(WORKER_DEFAULT_CONCURRENCY="2") as s:
        storage = s.app.storage
        real_push, real_find = storage.queue.push, storage.repo.find_job
        deleted = trio.Event()
        job_ids: list[int] = []

        async def push_then_delete(channel: str, ticket: Any, *, ack: bool = False) -> None:
            if ack and not deleted.is_set() and ticket.job_id in job_ids:  # the first retry
                assert await s.app.jobs.delete(ticket.job_id)  # taken here: cancelled where it is
                deleted.set()
                await real_push(channel, ticket, ack=ack)
                await trio.sleep(0.01)  # the other slot pops the retry (due in 100 ms)
                return
            await real_push(channel, ticket, ack=ack)

        async def slow_find(job_id: int) -> Any:
            if deleted.is_set() and job_id in job_ids:
                await trio.sleep(5)  # meanwhile the retry runs to its end
            return await real_find(job_id)

        storage.queue.push = push_then_delete  # type: ignore[method-assign]
        storage.repo.find_job = slow_find  # type: ignore[method-assign]
        w = await s.worker("retrying", retry_policy=policy, **STORE_ALL)
        job_ids.append(await s.enqueue(w, b"fail"))
        await s.listen(w, job_ids[0])
        await trio.sleep(10)  # let the deleted attempt finish looking
        results = await s.app.results.list_by_job_id(job_ids[0])
    assert deleted.is_set()
    finals = [r.data.status for r in results if r.data.status != data.ResultStatus.ERROR_AND_RETRY]
    assert len(finals) == 1, f"final results: {finals}"


async def test_a_scheduled_job_whose_retry_is_queued_keeps_no_row_once_the_retry_ends(autojump_clock: Any) -> None:
    """A scheduled job (a row) fails; its retry is due at once, so it goes to the queue. The
    process placing it dies right after the push (here: that step does not go on until the
    test is over), and the queued retry runs to its final result in another slot. Nothing of
    the job may be left then: the row used to be deleted only after the push, so it stayed —
    Find still showed a finished job, and in Scalable the row ran a second time once the dead
    holder's claim lapsed, or, its worker deleted, stayed for good (soak seed 86872)."""
    policy = data.RetryPolicy(type=data.RetryType.CONSTANT, interval=10, basis=1.0, max_retry=1)
    async with running_system(WORKER_DEFAULT_CONCURRENCY="2") as s:
        storage = s.app.storage
        real_push = storage.queue.push
        dead, test_over = trio.Event(), trio.Event()
        job_ids: list[int] = []

        async def push_then_die(channel: str, ticket: Any, *, ack: bool = False) -> None:
            await real_push(channel, ticket, ack=ack)
            if ticket.job_id in job_ids and not dead.is_set():
                dead.set()
                with trio.CancelScope(shield=True):  # no step of the dead process follows
                    await test_over.wait()

        storage.queue.push = push_then_die  # type: ignore[method-assign]
        w = await s.worker("scheduled-retrying", retry_policy=policy, **STORE_ALL)
        job_ids.append(await s.enqueue(w, b"fail", run_after_time=now_ms() + 2000))
        final = await s.listen(w, job_ids[0])
        left = await s.app.jobs.find(job_ids[0])
        status = await s.app.jobs.status(job_ids[0])
        runs = [c for c in s.pool.calls if c.args == b"fail"]
        test_over.set()
    assert dead.is_set()
    assert final.data.status == data.ResultStatus.MAX_RETRY and final.data.retried == 1
    assert len(runs) == 2
    assert left is None and status is None, f"the job outlived its final result: {left}"


async def test_a_stale_queue_copy_handed_back_after_its_holder_died_does_not_run(autojump_clock: Any) -> None:
    """A popped job failed; its holder placed the retry as a row and died before acknowledging
    the popped copy, which a reaper then handed out again (Scalable). That copy must not run:
    the row is the job now. Nor may a copy run whose job has ended since (no status left).
    The stores are written here as such a death leaves them (the Redis queue's side — a reaped
    copy popped as redelivered — is tested in tests/redis_queue)."""
    async with running_system(WORKER_DEFAULT_CONCURRENCY="2") as s:
        app, storage = s.app, s.app.storage
        w = await s.worker("retried-elsewhere", **STORE_ALL)
        wd = await app.workers.get(w.value)
        assert wd is not None and wd.data is not None

        def attempt(job_id: int, retried: int, run_after: int) -> data.Job:
            return data.Job(id=data.JobId(value=job_id), data=data.JobData(
                worker_id=w, args=f"attempt-{retried}".encode(), retried=retried, run_after_time=run_after,
                enqueue_time=now_ms(), timeout=60_000))

        replaced, ended = 9_301, 9_302
        await storage.status.set(replaced, data.JobStatus.PENDING, confirm=True)
        await storage.repo.create_job(attempt(replaced, 1, now_ms() + 1000))  # the retry, as a row
        async with storage.bus.listen_job(replaced) as waiter:
            await storage.queue.push(channel_of(wd.data), Ticket(attempt(replaced, 0, 0), redelivered=True))
            await storage.queue.push(channel_of(wd.data), Ticket(attempt(ended, 0, 0), redelivered=True))
            result = await waiter.wait()
        await trio.sleep(60)
        results = await app.results.list_by_job_id(replaced)
        runs = [c.args for c in s.pool.calls]
        left = [await app.jobs.find(replaced), await app.jobs.find(ended), await storage.queue.held([replaced, ended])]
    assert runs == [b"attempt-1"], "a stale copy ran"
    assert result.data.retried == 1 and [r.data.retried for r in results] == [1]
    assert left == [None, None, set()]


async def test_a_transition_on_closed_storage_gives_up_instead_of_waiting_it_out(autojump_clock: Any) -> None:
    """Storage this process has closed (it is stopping) does not come back: a transition that
    meets it fails at once instead of retrying with backoff for TRANSITION_LIMIT_S, which kept
    a stopping server up past its supervisor's patience (soak seed 829754)."""
    async with running_system() as s:
        life, repo = s.app.lifecycle, s.app.storage.repo
        w = await s.worker("closing", **STORE_ALL)
        worker = await s.app.workers.get(w.value)
        job = data.Job(id=data.JobId(value=9_401), data=data.JobData(worker_id=w, args=b"x"))
        result = life.result_of(job, worker, SUCCESS, [b"x+"], now_ms())
        await repo.aclose()
        started = trio.current_time()
        try:
            with pytest.raises(StorageClosed):
                await life.finish(result, worker, delete_row=True)
            waited = trio.current_time() - started
        finally:
            await repo.open()
    assert waited < TRANSITION_LIMIT_S / 10, f"waited {waited:.1f} s (virtual) for storage that was closed"
