"""Output streams of streamed jobs (storage/output_stream.py), the same tests for Standalone's
memory buffers and Scalable's Redis streams: order, replay for late listeners, bounds seen as
`dropped`, retries continuing a stream and a new run after an end starting a fresh one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from jobworkerp.aio import call_asyncio, close_redis, open_asyncio_bridge, open_redis
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.ext import JobOutputItem
from jobworkerp.storage import Storage, memory_storage, redis_storage
from jobworkerp.storage.output_stream import OutputBounds, OutputFeed
from jobworkerp.storage.redis_output import RedisOutputStreams
from jobworkerp.storage.sqlite import SqliteRepository
from tests.services import REDIS_URL, require_redis

pytestmark = pytest.mark.timeout(60)
BOUNDS = OutputBounds(max_chunks=4, max_bytes=1000, keep_s=60)
HANG_S = 30  # hang guard only


@pytest.fixture(params=["memory", "redis"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    repo = SqliteRepository(str(tmp_path / "db.sqlite3"))
    async with open_asyncio_bridge():
        await repo.open()
        try:
            if request.param == "memory":
                yield memory_storage(repo, output=BOUNDS)
                return
            require_redis()
            prefix = f"jwtest:{uuid.uuid4().hex[:12]}:"
            client = open_redis(REDIS_URL)
            try:
                async with redis_storage(client, prefix, repo, output=BOUNDS) as bundle:
                    yield bundle
            finally:
                keys = await call_asyncio(client.keys, f"{prefix}*")
                if keys:
                    await call_asyncio(client.delete, *keys)
                await close_redis(client)
        finally:
            await repo.aclose()


def chunk(item: JobOutputItem) -> bytes | int:
    """A data item's bytes, a dropped item's count."""
    return item.data if item.data is not None else int(item.dropped or 0)


async def read(feed: OutputFeed, count: int) -> list[bytes | int]:
    """Wait (bounded only by a hang guard) until `count` items have come."""
    got: list[bytes | int] = []
    with trio.fail_after(HANG_S):
        while len(got) < count:
            got += [chunk(i) for i in feed.take()]
            if len(got) < count:
                await feed.wait()
    return got


def result(job_id: int) -> data.JobResult:
    return data.JobResult(id=data.JobResultId(value=job_id + 1), data=data.JobResultData(
        job_id=data.JobId(value=job_id), status=data.ResultStatus.SUCCESS, output=data.ResultOutput(items=[b"abc"])))


async def test_a_listener_from_before_the_run_gets_every_chunk_in_order_then_the_end(storage: Storage) -> None:
    streams = storage.output
    async with streams.follow(1) as feed:
        writer = await streams.writer(1)
        for piece in (b"a", b"b", b"c"):
            writer.emit(piece)
        assert await read(feed, 3) == [b"a", b"b", b"c"]
        await writer.flush()
        await writer.end(result(1))
        assert await feed.rest() == []
        assert feed.ended


async def test_a_late_listener_gets_what_was_kept_and_the_end(storage: Storage) -> None:
    streams = storage.output
    writer = await streams.writer(2)
    writer.emit(b"one\n")
    writer.emit(b"two\n")
    await writer.end(result(2))
    async with streams.follow(2) as feed:
        assert await read(feed, 2) == [b"one\n", b"two\n"]
        with trio.fail_after(HANG_S):
            while not feed.ended:
                feed.take()
                await feed.wait()


async def test_past_the_bounds_the_oldest_chunks_go_and_a_listener_is_told_how_many(storage: Storage) -> None:
    streams = storage.output
    writer = await streams.writer(3)
    for i in range(10):
        writer.emit(b"%d" % i)
    await writer.flush()
    async with streams.follow(3) as feed:
        assert await read(feed, 5) == [6, b"6", b"7", b"8", b"9"]
    writer = await streams.writer(4)
    for i in range(3):
        writer.emit(bytes([65 + i]) * 400)  # 1200 bytes: over the 1000 kept
    await writer.flush()
    async with streams.follow(4) as feed:
        assert await read(feed, 3) == [1, b"B" * 400, b"C" * 400]


async def test_a_retry_continues_the_stream_and_a_run_after_an_end_starts_a_fresh_one(storage: Storage) -> None:
    streams = storage.output
    first = await streams.writer(5)
    first.emit(b"attempt 1\n")
    await first.flush()
    second = await streams.writer(5)  # a retry: the first attempt wrote no end marker
    second.emit(b"attempt 2\n")
    await second.end(result(5))
    async with streams.follow(5) as feed:
        assert await read(feed, 2) == [b"attempt 1\n", b"attempt 2\n"]
    following = await streams.writer(5)  # a periodic job's next run
    following.emit(b"run 2\n")
    await following.flush()
    async with streams.follow(5) as feed:
        assert await read(feed, 1) == [b"run 2\n"]


async def test_the_result_is_there_for_a_listener_who_came_after_it(storage: Storage) -> None:
    streams = storage.output
    writer = await streams.writer(6)
    writer.emit(b"x")
    await writer.end(result(6))
    await storage.settler.settle(6, result(6), to_worker=False, ack=False)
    assert await streams.ended_result(6) == result(6)


async def test_listeners_at_different_places_of_one_stream_each_get_it_all(storage: Storage) -> None:
    streams = storage.output
    writer = await streams.writer(7)
    async with streams.follow(7) as early:
        writer.emit(b"a")
        assert await read(early, 1) == [b"a"]
        writer.emit(b"b")
        await writer.flush()
        async with streams.follow(7) as late:
            writer.emit(b"c")
            assert await read(late, 3) == [b"a", b"b", b"c"]
            assert await read(early, 2) == [b"b", b"c"]


async def test_a_listener_that_joins_while_others_wait_is_served(storage: Storage) -> None:
    streams = storage.output
    async with streams.follow(8) as waiting:
        writer = await streams.writer(9)
        writer.emit(b"ready")
        await writer.flush()
        redis = streams if isinstance(streams, RedisOutputStreams) else None
        if redis is not None:  # a read for `waiting` alone is in flight
            with trio.fail_after(HANG_S):
                while not redis._reading:  # noqa: ASYNC110 - a flag of the code under test, which offers no event
                    await trio.sleep(0.01)
        async with streams.follow(9) as joining:
            assert await read(joining, 1) == [b"ready"]
        if redis is not None:  # ... and was woken for `joining`, rather than left to its timeout
            key = redis._wake_key
            assert await redis.redis.call(lambda p: p.xlen(key)) == 1
        assert waiting.take() == []
