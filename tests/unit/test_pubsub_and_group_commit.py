from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.group_commit import GroupCommitWriter
from jobworkerp.storage.pubsub import MemoryResultBus

pytestmark = pytest.mark.timeout(10)


def result(job_id: int, worker_id: int = 1) -> data.JobResult:
    return data.JobResult(
        id=data.JobResultId(value=job_id * 10),
        data=data.JobResultData(job_id=data.JobId(value=job_id), worker_id=data.WorkerId(value=worker_id)),
    )


async def test_every_job_listener_gets_the_result_and_leaves_nothing_behind() -> None:
    bus = MemoryResultBus()
    got: list[int] = []

    async def listen() -> None:
        async with bus.listen_job(5) as waiter:
            got.append((await waiter.wait()).id.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen)
        nursery.start_soon(listen)
        await trio.testing.wait_all_tasks_blocked()
        bus.publish_nowait(result(6), to_job=True, to_worker=True)  # another job: ignored
        bus.publish_nowait(result(5), to_job=True, to_worker=True)
    assert got == [50, 50]
    async with bus.listen_job(5) as late:  # the waiters left with their results: a new one waits afresh
        with trio.move_on_after(0.01) as scope:
            await late.wait()
    assert scope.cancelled_caught


async def test_worker_stream_sees_results_of_its_worker_only() -> None:
    bus = MemoryResultBus()
    async with bus.listen_worker(1) as receive:
        bus.publish_nowait(result(1, worker_id=2), to_job=False, to_worker=True)
        bus.publish_nowait(result(2, worker_id=1), to_job=False, to_worker=True)
        bus.publish_nowait(result(3, worker_id=1), to_job=True, to_worker=False)
        assert (await receive.receive()).id.value == 20
        with pytest.raises(trio.WouldBlock):
            receive.receive_nowait()


async def test_group_commit_batches_concurrent_writes_and_returns_after_commit() -> None:
    batches: list[list[int]] = []
    committed: set[int] = set()

    async def write_many(items: Sequence[int]) -> None:
        await trio.sleep(0.01)
        batches.append(list(items))
        committed.update(items)

    writer = GroupCommitWriter(write_many, max_batch=50)

    async def write(i: int) -> None:
        await writer.write(i)
        assert i in committed  # never returns before its own batch is stored

    async with trio.open_nursery() as nursery:
        for i in range(120):
            nursery.start_soon(write, i)
    assert sorted(i for b in batches for i in b) == list(range(120))
    assert len(batches) < 10
    assert max(len(b) for b in batches) <= 50


async def test_group_commit_reports_storage_errors_to_each_writer() -> None:
    async def write_many(items: Sequence[int]) -> None:
        raise OSError("disk full")

    writer = GroupCommitWriter(write_many)
    with pytest.raises(OSError, match="disk full"):
        await writer.write(1)
