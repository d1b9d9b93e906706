from __future__ import annotations

import pytest
import trio

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.ext import JobExtras
from jobworkerp.storage.memory_queue import MemoryJobQueue
from jobworkerp.storage.queue import Ticket

pytestmark = pytest.mark.timeout(10)


def job(job_id: int, priority: data.Priority = data.Priority.MEDIUM, uniq_key: str | None = None) -> Ticket:
    return Ticket(data.Job(id=data.JobId(value=job_id), data=data.JobData(priority=priority, uniq_key=uniq_key)))


async def test_pops_strict_priority_then_fifo() -> None:
    q = MemoryJobQueue()
    for i, p in [(1, data.Priority.LOW), (2, data.Priority.MEDIUM), (3, data.Priority.HIGH), (4, data.Priority.MEDIUM)]:
        await q.push("c", job(i, p))
    assert [(await q.pop("c")).job_id for _ in range(4)] == [3, 2, 4, 1]


async def test_channels_are_separate() -> None:
    q = MemoryJobQueue()
    await q.push("a", job(1))
    await q.push("b", job(2))
    assert (await q.pop("b")).job_id == 2
    assert await q.length("a") == 1 and await q.length("b") == 0


async def test_pop_waits_for_a_push() -> None:
    q = MemoryJobQueue()
    got: list[int] = []

    async def consumer() -> None:
        got.append((await q.pop("c")).job_id)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        await q.push("c", job(7))
    assert got == [7]


async def test_removed_job_is_never_popped() -> None:
    q = MemoryJobQueue()
    await q.push("c", job(1))
    await q.push("c", job(2))
    assert (await q.remove(1)).job_id == 1
    assert await q.remove(1) is None
    assert await q.length("c") == 1
    assert (await q.pop("c")).job_id == 2


async def test_length_counts_each_queued_job_once() -> None:
    """The count JOB_QUEUE_MAX_LENGTH compares with follows removes, re-pushes (a job moved to
    another channel or pushed again while queued), pops, releases and drains."""
    q = MemoryJobQueue()
    for i in range(1, 5):
        await q.push("c", job(i))
    await q.remove(2)
    await q.push("c", job(3))  # again while queued: still one job
    await q.push("d", job(4))  # moved to another channel
    assert (await q.length("c"), await q.length("d")) == (2, 1)
    assert (await q.pop("c")).job_id == 1
    assert await q.length("c") == 1
    await q.release(1)
    assert await q.length("c") == 2
    assert [t.job_id for t in await q.drain_volatile()] == [1, 3, 4]
    assert (await q.length("c"), await q.length("d")) == (0, 0)


async def test_a_queued_job_comes_back_with_every_field() -> None:
    """Queued jobs are kept packed into plain tuples; a field the packing forgot (say, one added
    to JobData) would be silently dropped, so every field of Job and JobData is set here."""
    full = data.Job(id=data.JobId(value=9), data=data.JobData(
        worker_id=data.WorkerId(value=4), args=b"\x00\xff", uniq_key="u", enqueue_time=11, grabbed_until_time=12,
        run_after_time=13, retried=2, priority=data.Priority.HIGH, timeout=14))
    assert {f.name for f in data.Job.__dataclass_fields__.values()} == {"id", "data"}
    assert all(getattr(full.data, name) not in (None, 0, b"", "")
               for name in data.JobData.__dataclass_fields__)
    ticket = Ticket(full, backed=True, queue_type=int(data.QueueType.WITH_BACKUP), redelivered=True,
                    extras=JobExtras(traceparent="00-ab-cd-01", stream_output=True))
    assert {f for f in Ticket.__dataclass_fields__} == {"job", "backed", "queue_type", "redelivered", "extras"}
    q = MemoryJobQueue()
    await q.push("c", ticket)
    found = await q.find(9)
    popped = await q.pop("c")
    assert found == popped == ticket


def test_a_ticket_encodes_its_extras_and_still_reads_the_encoding_without_them() -> None:
    job = data.Job(id=data.JobId(value=7), data=data.JobData(args=b"\x01", priority=data.Priority.HIGH))
    plain = Ticket(job, backed=True, queue_type=int(data.QueueType.WITH_BACKUP))
    # The encoding earlier releases wrote (and still write for a job without extras).
    assert plain.encode() == bytes([int(data.QueueType.WITH_BACKUP) << 1 | 1]) + bytes(job)
    assert Ticket.decode(plain.encode()) == plain
    extras = JobExtras(traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01", tracestate="k=v", stream_output=True)
    carried = Ticket(job, queue_type=int(data.QueueType.FORCED_RDB), extras=extras)
    assert Ticket.decode(carried.encode()) == carried


async def test_a_popped_ticket_is_the_pushed_one() -> None:
    q = MemoryJobQueue()
    full = Ticket(data.Job(id=data.JobId(value=7), data=data.JobData(
        worker_id=data.WorkerId(value=3), args=b"\x01", uniq_key="u", enqueue_time=5, grabbed_until_time=9,
        run_after_time=6, retried=2, priority=data.Priority.HIGH, timeout=100)), backed=True, queue_type=1)
    await q.push("c", full)
    assert (await q.pop("c")) == full
    # no data, and a worker id of 0: read back as absent (the value nothing can point at)
    await q.push("c", Ticket(data.Job(id=data.JobId(value=8))))
    await q.push("c", Ticket(data.Job(id=data.JobId(value=9), data=data.JobData(worker_id=data.WorkerId(value=0)))))
    for job_id in (8, 9):
        popped = await q.pop("c")
        assert popped.job_id == job_id and popped.job.data is not None and popped.job.data.worker_id is None
