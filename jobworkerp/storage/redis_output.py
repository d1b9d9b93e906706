"""Scalable output streams: a Redis stream per streamed job (`output_stream.py`).

The worker process running the job writes `{prefix}job_output:{job_id}` (XADD, ids `0-n`: the
entry numbers, so any gap is visible to listeners); a front process serving a listener reads it.

Writing (`_Writer`): each chunk is one XADD, queued on the process's pipeliner without waiting
(the runner pool's reader task cannot wait), trimmed to `max_chunks` entries (MAXLEN) and, by the
sizes the writer knows, to `max_bytes` of the attempt's chunks (XTRIM MINID). While Redis has not
confirmed `max_chunks` chunks or `max_bytes` bytes, further chunks are dropped rather than queued
without bound; their numbers are skipped, so listeners see them as dropped. The key expires a day
after its last write, and `keep_s` after its end marker. An attempt starts with one round trip
(BEGIN) that finds the number to go on from — a retry may run in another process — or deletes a
stream that has ended (a periodic job's next run starts a fresh one).

Reading (`RedisOutputStreams.run`, one task per process): one XREAD BLOCK for all the streams this
process's listeners wait on, on one connection of the pool — a blocking read per listener would
hold a connection each, and a few dozen listeners would starve the process's other Redis work.
A listener is read for only when it has taken what it was handed (at most READ_COUNT entries), so
a slow listener holds no more than that here; Redis's own trimming is what it then skips. A
listener that joins, or wants more, while the read blocks without it wakes the read with an XADD
to the process's wake stream, which every read includes.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio

from jobworkerp.aio import call_asyncio
from jobworkerp.backoff import Backoff
from jobworkerp.errors import is_outage
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.ext import JobOutputItem
from jobworkerp.storage.output_stream import UNENDED_KEEP_S, Cursor, Entry, OutputBounds
from jobworkerp.storage.redis_bus import RedisResultBus
from jobworkerp.storage.redis_pipeline import RedisPipeliner

log = logging.getLogger(__name__)

READ_COUNT = 256  # entries handed to one listener at a time
# Longest blocking read: below redis-py's socket timeout (5 s), which would end it as an error.
BLOCK_MS = 3000
FLUSH_LIMIT_S = 10.0  # longest wait for Redis to take a run's chunks before its report goes on
UNENDED_TTL_MS = int(UNENDED_KEEP_S * 1000)
WAKE_TTL_MS = 86_400_000

# KEYS[1]: the stream. ARGV: MAXLEN, expiry ms, a MINID to trim to ('' = none), then (n, chunk)
# pairs to append as entries 0-n. An entry Redis refuses (a number not above the newest: another
# process wrote meanwhile) is skipped, not the batch.
_APPEND = """
for i = 4, #ARGV, 2 do
  redis.pcall('XADD', KEYS[1], 'MAXLEN', ARGV[1], '0-' .. ARGV[i], 'd', ARGV[i + 1])
end
if ARGV[3] ~= '' then redis.call('XTRIM', KEYS[1], 'MINID', ARGV[3]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1]: the stream. Returns the number of its newest entry; a stream whose newest entry is an
# end marker (field 'e') is deleted first, and 0 returned: the run starts a fresh stream.
_BEGIN = """
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #top == 0 then return 0 end
if top[1][2][1] == 'e' then
  redis.call('DEL', KEYS[1])
  return 0
end
local id = top[1][1]
return tonumber(string.sub(id, string.find(id, '-', 1, true) + 1))
"""


def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    n = int(entry_id.rsplit(b"-", 1)[1])
    return n, fields.get(b"d", b"") if b"e" not in fields else None


def _range_after(key: str, n: int, pipe: Any) -> Any:
    """Queue an XRANGE of the entries numbered after `n` (at most READ_COUNT)."""
    return pipe.xrange(key, min=f"(0-{n}", max="+", count=READ_COUNT)


class _Writer:
    """See the module docstring. `emit` only numbers and queues; a pump task (started on the
    `RedisOutputStreams` nursery when chunks wait and none runs, gone when none are left) sends
    what waits as one script call, and the next batch once Redis has answered."""

    def __init__(self, streams: RedisOutputStreams, key: str, last: int) -> None:
        self._streams = streams
        self._key = key
        self._bounds = streams.bounds
        self._n = last  # the number of the newest entry
        self._waiting: deque[tuple[int, bytes]] = deque()  # (n, chunk) not yet sent, oldest first
        self._waiting_bytes = 0
        self._written: deque[tuple[int, int]] = deque()  # (n, size) of this attempt's kept chunks
        self._written_bytes = 0
        self._pumping = False
        self._idle = trio.Event()
        self._idle.set()
        self._failed = False
        self._ended = False

    def emit(self, chunk: bytes) -> None:
        if self._ended:  # (nothing may follow the end marker)
            return
        self._n += 1
        bounds, waiting = self._bounds, self._waiting
        waiting.append((self._n, chunk))
        self._waiting_bytes += len(chunk)
        while len(waiting) > 1 and (len(waiting) > bounds.max_chunks or self._waiting_bytes > bounds.max_bytes):
            self._waiting_bytes -= len(waiting.popleft()[1])  # Redis is behind: the oldest go
        if not self._pumping:
            try:
                self._streams.nursery.start_soon(self._pump, name=f"{self._key} writer")
            except RuntimeError:  # the storage is closing: nothing is sent any more
                waiting.clear()
                self._waiting_bytes = 0
                return
            self._pumping = True
            self._idle = trio.Event()

    async def _pump(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, deque()
                self._waiting_bytes = 0
                await self._send(batch)
        finally:
            self._pumping = False
            self._idle.set()

    async def _send(self, batch: deque[tuple[int, bytes]]) -> None:
        """One script call: XADD each chunk, trim to the bounds, push the expiry back."""
        bounds = self._bounds
        for n, chunk in batch:
            self._written.append((n, len(chunk)))
            self._written_bytes += len(chunk)
        min_id = ""
        if self._written_bytes > bounds.max_bytes:
            while self._written_bytes > bounds.max_bytes and len(self._written) > 1:
                self._written_bytes -= self._written.popleft()[1]
            min_id = f"0-{self._written[0][0]}"
        args: list[Any] = [bounds.max_chunks, UNENDED_TTL_MS, min_id]
        for n, chunk in batch:
            args += (n, chunk)
        try:
            await self._streams.redis.script(self._streams.append_script, [self._key], args)
        except Exception as e:  # lost chunks are gaps to listeners; the job itself goes on
            if not self._failed:
                self._failed = True
                log.warning("%s: Redis did not take chunks (%s: %s); listeners see them as dropped", self._key,
                            type(e).__name__, e)

    async def flush(self) -> None:
        with trio.move_on_after(FLUSH_LIMIT_S):
            await self._idle.wait()

    async def end(self, result: data.JobResult) -> None:
        self._ended = True
        await self.flush()
        self._n += 1
        key, n, keep_ms = self._key, self._n, int(self._bounds.keep_s * 1000)
        redis = self._streams.redis
        try:
            with trio.move_on_after(FLUSH_LIMIT_S):
                await redis.call(lambda p: p.xadd(key, {"e": ""}, id=f"0-{n}"))
            redis.send(lambda p: p.pexpire(key, max(keep_ms, 1)), "expiry of a job's ended output stream")
        except Exception as e:  # listeners still end on the result; the stream expires on its own
            log.warning("%s: the end marker was not written (%s: %s)", key, type(e).__name__, e)


class _Feed:
    """One listener: entries the reader task hands over, and a cursor."""

    def __init__(self, streams: RedisOutputStreams, key: str) -> None:
        self.key = key
        self._streams = streams
        self._cursor = Cursor()
        self.handed: list[Entry] = []
        self.arrived = trio.Event()
        self.reading = False  # included in the read in flight
        self.detached = False

    @property
    def ended(self) -> bool:
        return self._cursor.ended

    @property
    def wants(self) -> bool:
        return not (self.handed or self._cursor.ended or self.detached)

    @property
    def after(self) -> int:
        return self._cursor.seen

    def hand(self, entries: list[Entry]) -> None:
        self.handed.extend(entries)
        self.arrived.set()

    def take(self) -> list[JobOutputItem]:
        if not self.handed:
            return []
        handed, self.handed = self.handed, []
        self.arrived = trio.Event()
        items = self._cursor.items(handed)
        if self.wants:
            self._streams.want(self)
        return items

    async def wait(self) -> None:
        if not (self.handed or self._cursor.ended):
            await self.arrived.wait()

    async def rest(self) -> list[JobOutputItem]:
        self.detached = True
        items = self.take()
        while not self._cursor.ended:
            raw = await self._streams.redis.call(partial(_range_after, self.key, self._cursor.seen))
            if not raw:
                break
            items += self._cursor.items(_entry(i, f) for i, f in raw)
        return items


class RedisOutputStreams:
    def __init__(self, client: Any, prefix: str, pipeliner: RedisPipeliner, bus: RedisResultBus,
                 bounds: OutputBounds | None = None) -> None:
        self._client = client
        self._prefix = prefix
        self.redis = pipeliner
        self._bus = bus
        self.bounds = bounds or OutputBounds()
        self._begin = client.register_script(_BEGIN)
        self.append_script = client.register_script(_APPEND)
        self._nursery: trio.Nursery | None = None  # where writers' pumps run (`run`)
        self._feeds: set[_Feed] = set()
        self._wanted = trio.Event()  # a feed wants entries the read in flight will not bring
        self._reading = False
        self._wake_key = f"{prefix}job_output_wake:{uuid.uuid4().hex}"
        self._wake_id = b"0-0"

    def key(self, job_id: int) -> str:
        return f"{self._prefix}job_output:{job_id}"

    @property
    def nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("the output stream reader is not running")
        return self._nursery

    async def writer(self, job_id: int) -> _Writer:
        key = self.key(job_id)
        last = int(await self.redis.script(self._begin, [key], []))
        return _Writer(self, key, last)

    @asynccontextmanager
    async def follow(self, job_id: int) -> AsyncIterator[_Feed]:
        feed = _Feed(self, self.key(job_id))
        self._feeds.add(feed)
        self.want(feed)
        try:
            yield feed
        finally:
            feed.detached = True
            self._feeds.discard(feed)

    async def ended_result(self, job_id: int) -> data.JobResult | None:
        return await self._bus.stored_result(job_id)

    def want(self, feed: _Feed) -> None:
        """`feed` has taken what it was handed: read for it, waking a read in flight without it."""
        self._wanted.set()
        if self._reading and not feed.reading:
            key = self._wake_key
            self.redis.send(lambda p: p.xadd(key, {"w": "1"}, maxlen=1, approximate=False),
                            "wake-up of the output read", at_once=True)
            self.redis.send(lambda p: p.pexpire(key, WAKE_TTL_MS), "expiry of the output wake-up stream")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read for the listeners of this process until cancelled (one task per process)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                task_status.started()
                await self._read()
            finally:
                self._nursery = None

    async def _read(self) -> None:
        backoff = Backoff("job output stream reader", log)
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            feeds = [feed for feed in self._feeds if feed.wants]
            if not feeds:
                continue
            after: dict[str, int] = {}
            for feed in feeds:
                after[feed.key] = min(after.get(feed.key, feed.after), feed.after)
                feed.reading = True
            streams: dict[str, Any] = {self._wake_key: self._wake_id}
            streams.update((key, f"0-{n}") for key, n in after.items())
            self._reading = True
            try:
                reply = await call_asyncio(self._client.xread, streams, count=READ_COUNT, block=BLOCK_MS)
            except Exception as e:
                if not is_outage(e):
                    raise
                self._wanted.set()  # the same feeds still want
                await backoff.failed(e)
                continue
            finally:
                self._reading = False
                for feed in feeds:
                    feed.reading = False
            backoff.succeeded()
            self._hand_out(feeds, reply or [])
            # Feeds that got nothing (the read timed out, or a wake-up) are read for again.
            if any(feed.wants for feed in feeds):
                self._wanted.set()

    def _hand_out(self, feeds: list[_Feed], reply: list[Any]) -> None:
        by_key: dict[str, list[Entry]] = {}
        for raw_key, raw_entries in reply:
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            if key == self._wake_key:
                self._wake_id = raw_entries[-1][0]
                continue
            by_key[key] = [_entry(entry_id, fields) for entry_id, fields in raw_entries]
        for feed in feeds:
            entries = by_key.get(feed.key)
            if entries and not feed.detached:
                fresh = [entry for entry in entries if entry[0] > feed.after]
                if fresh:
                    feed.hand(fresh)
