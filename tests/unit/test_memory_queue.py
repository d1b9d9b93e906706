from __future__ import annotations

import pytest
import trio

from jobworkerp.proto.jobworkerp import data
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
