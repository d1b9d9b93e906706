"""A slow ListenStreamByWorker subscriber is bounded (storage/worker_stream.py): past its result or
byte budget it is cut off, its buffer freed, and its stream ends with ResourceExhausted naming the
limit; subscribers that keep up, and other subscribers, are not affected."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from jobworkerp.errors import ResourceExhausted
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.pubsub import MemoryResultBus
from jobworkerp.storage.worker_stream import RESULT_OVERHEAD, StreamBounds

pytestmark = pytest.mark.timeout(10)


def result(job_id: int, output: bytes = b"") -> data.JobResult:
    return data.JobResult(id=data.JobResultId(value=job_id), data=data.JobResultData(
        job_id=data.JobId(value=job_id), worker_id=data.WorkerId(value=1), output=data.ResultOutput(items=[output])))


def publish(bus: MemoryResultBus, *results: data.JobResult) -> None:
    for r in results:
        bus.publish_nowait(r, to_job=False, to_worker=True)


async def test_a_subscriber_past_its_result_budget_is_cut_off_with_a_reason() -> None:
    bus = MemoryResultBus(StreamBounds(max_results=3, max_bytes=1 << 30))
    async with bus.listen_worker(1) as slow, bus.listen_worker(1) as fast:
        publish(bus, result(1), result(2), result(3))
        assert [(await fast.receive()).id.value for _ in range(3)] == [1, 2, 3]
        publish(bus, result(4))  # the fourth unread result: too many for `slow`
        assert (await fast.receive()).id.value == 4
        with pytest.raises(ResourceExhausted, match="LISTEN_STREAM_MAX_BUFFERED=3") as info:
            await slow.receive()
        assert "3 results" in str(info.value) and "FindList" in str(info.value)
        publish(bus, result(5))  # cut off for good; the other goes on
        with pytest.raises(ResourceExhausted):
            slow.receive_nowait()
        assert (await fast.receive()).id.value == 5


async def test_a_subscriber_past_its_byte_budget_is_cut_off_but_one_big_result_always_fits() -> None:
    big = 10_000
    bus = MemoryResultBus(StreamBounds(max_results=1000, max_bytes=big))
    async with bus.listen_worker(1) as stream:
        publish(bus, result(1, b"x" * (2 * big)))  # alone in an empty buffer: accepted
        assert (await stream.receive()).data.output.items == [b"x" * (2 * big)]
        publish(bus, result(2, b"x" * (big - RESULT_OVERHEAD - 100)), result(3, b"x" * 200))
        with pytest.raises(ResourceExhausted, match=f"LISTEN_STREAM_MAX_BUFFERED_BYTES={big}"):
            await stream.receive()


async def test_a_waiting_subscriber_wakes_for_results_and_ends_when_unsubscribed() -> None:
    bus = MemoryResultBus(StreamBounds(max_results=2, max_bytes=1 << 20))
    got: list[int] = []
    async with bus.listen_worker(1) as stream:
        async with trio.open_nursery() as nursery:
            async def read() -> None:
                async for r in stream:
                    got.append(r.id.value)

            nursery.start_soon(read)
            for i in range(10):  # read as they come: never more than one behind
                publish(bus, result(i))
                await trio.testing.wait_all_tasks_blocked()
            stream.close()
    assert got == list(range(10))


async def test_a_batch_takes_what_has_come_in_order_within_its_caps() -> None:
    bus = MemoryResultBus(StreamBounds(max_results=100, max_bytes=1 << 30))
    async with bus.listen_worker(1) as stream:
        publish(bus, *(result(i) for i in range(1, 6)))
        assert [r.id.value for r in await stream.receive_batch(max_results=3)] == [1, 2, 3]
        assert [r.id.value for r in await stream.receive_batch()] == [4, 5]
        big = b"x" * 5000
        publish(bus, result(6, big), result(7, big), result(8, big))
        # the first always comes, whatever its size; the next ones while they fit the byte cap
        assert [r.id.value for r in await stream.receive_batch(max_bytes=2 * (5000 + RESULT_OVERHEAD))] == [6, 7]
        assert [r.id.value for r in await stream.receive_batch()] == [8]
        publish(bus, result(9, big), result(10, big))
        assert [r.id.value for r in await stream.receive_batch(max_bytes=100)] == [9]
        assert [r.id.value for r in await stream.receive_batch(max_bytes=100)] == [10]
        stream.close()
        with pytest.raises(trio.EndOfChannel):
            await stream.receive_batch()
