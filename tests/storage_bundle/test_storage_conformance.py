"""What the core relies on from a storage bundle, for every combination of drivers."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.ext import JobExtras
from jobworkerp.storage import Storage
from jobworkerp.storage.queue import Ticket

pytestmark = pytest.mark.timeout(60)
HIGH, MEDIUM, LOW = data.Priority.HIGH, data.Priority.MEDIUM, data.Priority.LOW


def job(job_id: int, priority: data.Priority = MEDIUM, worker_id: int = 1) -> Ticket:
    return Ticket(data.Job(id=data.JobId(value=job_id), data=data.JobData(
        worker_id=data.WorkerId(value=worker_id), args=f"a{job_id}".encode(), priority=priority, timeout=1000)))


def result(job_id: int, worker_id: int = 1) -> data.JobResult:
    return data.JobResult(id=data.JobResultId(value=job_id + 10_000), data=data.JobResultData(
        job_id=data.JobId(value=job_id), worker_id=data.WorkerId(value=worker_id), status=data.ResultStatus.SUCCESS,
        output=data.ResultOutput(items=[b"out"])))


async def test_queue_pops_by_priority_then_fifo_per_channel(storage: Storage) -> None:
    q = storage.queue
    for job_id, prio in [(1, LOW), (2, MEDIUM), (3, HIGH), (4, MEDIUM), (5, HIGH)]:
        await q.push("c", job(job_id, prio))
    await q.push("other", job(6))
    assert await q.length("c") == 5
    popped = [await q.pop("c") for _ in range(5)]
    assert [j.job_id for j in popped] == [3, 5, 2, 4, 1]
    assert popped[0].job.data.args == b"a3" and popped[0].job.data.timeout == 1000
    for j in popped:
        await q.ack(j.job_id)
    assert await q.length("c") == 0 and await q.length("other") == 1


async def test_queue_lengths_by_priority_count_only_jobs_still_waiting(storage: Storage) -> None:
    q = storage.queue
    for job_id, prio in [(1, LOW), (2, MEDIUM), (3, HIGH), (4, MEDIUM), (5, HIGH), (6, data.Priority(7))]:
        await q.push("c", job(job_id, prio))
    await q.push("other", job(7, LOW))
    await q.remove(4)
    assert (await q.pop("c")).job_id == 3  # in flight: no longer waiting
    counts = await q.lengths_by_priority(["c", "empty"])
    assert counts == {("c", int(HIGH)): 1, ("c", int(MEDIUM)): 2, ("c", int(LOW)): 1,  # 6: unknown = MEDIUM
                      ("empty", int(HIGH)): 0, ("empty", int(MEDIUM)): 0, ("empty", int(LOW)): 0}


async def test_queue_pop_waits_for_a_push(storage: Storage) -> None:
    got: list[int] = []
    popped = trio.Event()

    async def consume() -> None:
        got.append((await storage.queue.pop("wait")).job_id)
        popped.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        with trio.move_on_after(0.2):  # nothing to pop yet: the consumer must still be waiting
            await popped.wait()
        assert got == []
        await storage.queue.push("wait", job(9))
        with trio.fail_after(10):
            await popped.wait()
    assert got == [9]


async def test_removed_job_is_not_popped_and_queued_ids_see_the_rest(storage: Storage) -> None:
    q = storage.queue
    await q.push("c", job(1))
    await q.push("c", job(2))
    removed = await q.remove(1)
    assert removed is not None and removed.job_id == 1
    assert await q.remove(1) is None
    assert await q.queued_ids(["c"]) == {2}
    assert (await q.pop("c")).job_id == 2
    assert await q.queued_ids(["c"]) == {2}  # in flight until acked
    await q.ack(2)
    assert await q.queued_ids(["c"]) == set()


async def test_job_status_lifecycle(storage: Storage) -> None:
    await storage.status.set(7, data.JobStatus.PENDING)
    await storage.status.set(7, data.JobStatus.RUNNING)
    await storage.status.set(8, data.JobStatus.PENDING)
    assert await storage.status.get(7) == data.JobStatus.RUNNING
    assert await storage.status.all() == [(7, data.JobStatus.RUNNING), (8, data.JobStatus.PENDING)]
    await storage.status.delete(7)
    assert await storage.status.get(7) is None


async def test_uniq_key_held_until_released(storage: Storage) -> None:
    assert await storage.uniq_keys.acquire("k", 1) is None
    assert await storage.uniq_keys.acquire("k", 2) == 1
    await storage.uniq_keys.release(2)
    assert await storage.uniq_keys.acquire("k", 2) == 1
    await storage.uniq_keys.release(1)
    assert await storage.uniq_keys.acquire("k", 2) is None


async def test_results_reach_job_listeners_and_worker_streams(storage: Storage) -> None:
    async with storage.bus.listen_job(5) as first, storage.bus.listen_job(5) as second, \
            storage.bus.listen_worker(3) as stream:
        await storage.bus.publish(result(4, worker_id=3), to_job=True, to_worker=True)
        await storage.bus.publish(result(5, worker_id=3), to_job=True, to_worker=False)
        await storage.bus.publish(result(6, worker_id=3), to_job=False, to_worker=True)
        with trio.fail_after(10):
            assert (await first.wait()).data.job_id.value == 5
            assert (await second.wait()).data.job_id.value == 5
            assert [(await stream.receive()).data.job_id.value for _ in range(2)] == [4, 6]


async def test_repository_and_queue_agree_on_a_backed_up_job(storage: Storage) -> None:
    backed = Ticket(job(11).job, backed=True, queue_type=int(data.QueueType.WITH_BACKUP))
    await storage.repo.create_job(backed.job)
    await storage.queue.push("c", backed)
    popped = await storage.queue.pop("c")
    assert popped == backed
    assert await storage.repo.claim_job(popped.job_id, 0, 5000)
    assert not await storage.repo.claim_job(popped.job_id, 0, 6000)
    await storage.queue.ack(popped.job_id)
    assert await storage.repo.delete_job(popped.job_id)
    assert await storage.repo.find_job(popped.job_id) is None


async def test_a_jobs_extras_travel_with_it_through_queue_and_row(storage: Storage) -> None:
    extras = JobExtras(traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01", stream_output=True)
    ticket = Ticket(job(12).job, backed=True, queue_type=int(data.QueueType.WITH_BACKUP), extras=extras)
    await storage.repo.create_job(ticket.job, bytes(extras))
    await storage.queue.push("c", ticket)
    popped = await storage.queue.pop("c")
    assert popped == ticket and popped.extras == extras
    assert JobExtras.parse((await storage.repo.find_job_extras([12]))[12]) == extras
    await storage.queue.ack(popped.job_id)


async def test_a_released_job_goes_back_to_the_front_of_its_queue(storage: Storage) -> None:
    q = storage.queue
    for job_id in (1, 2):
        await q.push("c", job(job_id))
    first = await q.pop("c")
    await q.release(first.job_id)
    assert (await q.pop("c")).job_id == 1  # its old place, ahead of job 2
    assert await q.queued_ids(["c"]) == {1, 2}  # 1 in flight again, 2 still queued


async def test_a_cancelled_pop_leaves_nothing_in_flight(storage: Storage) -> None:
    q = storage.queue
    with trio.move_on_after(0.05):
        await q.pop("empty")
    await q.push("empty", job(3))
    assert (await q.pop("empty")).job_id == 3
    await q.ack(3)
    assert await q.queued_ids(["empty"]) == set()


async def test_settle_ends_a_job_in_one_step(storage: Storage) -> None:
    """Status, uniq_key, in-flight entry and waiters all change together."""
    await storage.uniq_keys.acquire("only-one", 21)
    await storage.status.set(21, data.JobStatus.RUNNING)
    await storage.queue.push("s", job(21))
    await storage.queue.pop("s")
    async with storage.bus.listen_job(21) as waiter:
        await storage.settler.settle(21, result(21), to_worker=False, ack=True)
        with trio.fail_after(10):
            assert (await waiter.wait()).data.job_id.value == 21
    assert await storage.status.get(21) is None
    assert await storage.uniq_keys.acquire("only-one", 22) is None  # free again
    assert await storage.queue.queued_ids(["s"]) == set()  # no longer in flight


async def test_a_queued_job_can_be_found_until_it_is_popped(storage: Storage) -> None:
    q = storage.queue
    await q.push("f", job(31))
    found = await q.find(31)
    assert found is not None and found.job.data.args == b"a31"
    await q.pop("f")
    assert await q.find(31) is None
    await q.ack(31)


async def test_try_pop_takes_a_queued_job_or_returns_none_at_once(storage: Storage) -> None:
    q = storage.queue
    assert await q.try_pop("t") is None
    await q.push("t", job(41))
    popped = await q.try_pop("t")
    assert popped is not None and popped.job_id == 41
    await q.ack(41)


async def test_held_names_queued_and_in_flight_jobs_only(storage: Storage) -> None:
    """The orphan sweep's question: does anything still hold these jobs?"""
    q = storage.queue
    await q.push("h", job(51))
    await q.push("h", job(52))
    await q.pop("h")  # 51 in flight, 52 queued
    assert await q.held([51, 52, 53]) == {51, 52}
    await q.ack(51)
    assert await q.held([51, 52, 53]) == {52}


async def test_uniq_key_holders_are_listed_until_released(storage: Storage) -> None:
    await storage.uniq_keys.acquire("k1", 61)
    await storage.uniq_keys.acquire("k2", 62)
    assert sorted(await storage.uniq_keys.holders()) == [61, 62]
    await storage.uniq_keys.release(61)
    assert await storage.uniq_keys.holders() == [62]


async def test_settle_orphan_ends_a_job_once_and_only_while_it_has_a_status(storage: Storage) -> None:
    await storage.uniq_keys.acquire("orphan", 71)
    await storage.status.set(71, data.JobStatus.PENDING, confirm=True)
    async with storage.bus.listen_job(71) as waiter:
        assert await storage.settler.settle_orphan(71, result(71), to_worker=False)
        with trio.fail_after(10):
            assert (await waiter.wait()).data.job_id.value == 71
    assert await storage.status.get(71) is None
    assert await storage.uniq_keys.acquire("orphan", 72) is None  # free again
    assert not await storage.settler.settle_orphan(71, result(71), to_worker=False)  # already ended: no-op


async def test_a_rerun_push_acknowledges_the_previous_run_in_the_same_step(storage: Storage) -> None:
    """The re-run's copy has the same id: once it is popped, nothing of the previous run's
    acknowledgement may touch it (a release must still find it in flight)."""
    q = storage.queue
    await q.push("r", job(81))
    await q.pop("r")  # the first run
    await q.push("r", job(81), ack=True)  # its retry goes back, acknowledging the first run
    assert (await q.pop("r")).job_id == 81  # the retry is taken
    await q.release(81)  # its run is interrupted: it must go back, not vanish
    assert await q.held([81]) == {81}
    assert (await q.pop("r")).job_id == 81
    await q.ack(81)
    assert await q.held([81]) == set()


async def test_a_direct_caller_gets_its_result_from_every_kind_of_ending(storage: Storage) -> None:
    """A DIRECT caller listens before its job is placed, and hears of its job whichever way it
    ends: a settle after a run, the orphan sweep's settle, or a periodic run's announcement."""
    for job_id in (91, 92, 93):
        async with storage.bus.listen_direct(job_id) as waiter:
            confirm = await storage.status.set_ahead(job_id, data.JobStatus.PENDING)
            if confirm is None:
                await storage.status.set(job_id, data.JobStatus.PENDING, confirm=True)
            await storage.queue.push("d", job(job_id))
            if confirm is not None:
                await confirm()
            if job_id == 91:
                await storage.queue.pop("d")
                await storage.settler.settle(job_id, result(job_id), to_worker=False, ack=True)
            elif job_id == 92:
                assert (await storage.queue.remove(job_id)) is not None
                assert await storage.settler.settle_orphan(job_id, result(job_id), to_worker=False)
            else:
                await storage.bus.publish(result(job_id), to_job=True, to_worker=False)
            with trio.fail_after(10):
                assert (await waiter.wait()).data.job_id.value == job_id
    assert await storage.status.all() == [(93, data.JobStatus.PENDING)]  # the periodic job lives on
