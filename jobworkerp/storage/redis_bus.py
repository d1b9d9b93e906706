"""ResultBus over Redis pub/sub, for results that cross processes (Scalable mode).

One pub/sub connection per process (`RedisSubscription`) carries every subscription; local
listeners of the same topic share one Redis subscription (reference-counted), and messages are
fanned out in-process. A listener subscribes — and Redis confirms — before it looks at storage
or queues its job, so no result can be published unseen in between. A topic whose last listener
left is unsubscribed until Redis confirms it, across outages and reconnects, so none is left
behind (tests/chaos/test_cross_process_races.py).

Topics (prefixed): `job_result_changed:job:{id}`, `job_result_changed:worker:{id}`,
`worker_changed` (worker create/update/delete events, so every process drops cached workers),
`job_cancel` (a deleted job, so the process running it cancels it) and
`direct_reply:{bus}` (one per process: results for the DIRECT callers it serves).

A DIRECT caller (`listen_direct`) does not subscribe its job's topic: a SUBSCRIBE confirmed before
the push, and an UNSUBSCRIBE after, were two of the front's four Redis round trips per job, each
through the subscription's lock and reader. Instead its job gets a *reply route* — the field
job id -> this process's reply topic in `JOB_REPLY_TO`, written in the round trip that pushes the
job (ahead of the push, so no worker can settle the job before its route exists) — and the
scripts that publish a job's result (the settle script, `redis_settle.py`, and `_PUBLISH` here)
publish it on the route too; the settle drops the route with the job's status. The reply topic is
subscribed once, at start, before the process serves anything.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from jobworkerp.aio import call_asyncio
from jobworkerp.errors import is_outage
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.pubsub import EncodedResult, JobResultWaiter, deliver_to_streams
from jobworkerp.storage.redis_pipeline import RedisPipeliner, Reply
from jobworkerp.storage.redis_subscription import RedisSubscription
from jobworkerp.storage.worker_stream import StreamBounds, WorkerResultStream
from jobworkerp.wire import encode
from jobworkerp.wire_decode import decode, message_field

log = logging.getLogger(__name__)


# Publish one result to its topics in one command. KEYS[1] is the job's result key (kept for
# ARGV[2] ms when ARGV[2] > 0, for waiters that missed the message), KEYS[2] the reply routes
# (with ARGV[3] = '1', a DIRECT caller's route of job ARGV[4] gets it too), KEYS[3..] the topics.
_PUBLISH = """
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
for i = 3, #KEYS do
  redis.call('PUBLISH', KEYS[i], ARGV[1])
end
if ARGV[3] == '1' then
  local route = redis.call('HGET', KEYS[2], ARGV[4])
  if route then redis.call('PUBLISH', route, ARGV[1]) end
end
return #KEYS - 2
"""

# How long a job waiter trusts pub/sub alone before it also looks at the job's result key: a
# message lost while the subscription connection reconnected costs at most this much delay.
RECHECK_S = 1.0
UNSUBSCRIBE_S = 5.0  # longest wait for an UNSUBSCRIBE (or closing the subscription) to complete
LEFTOVER_RETRY_S = 1.0  # how often unsubscribes Redis has not confirmed are tried again

_RESULT_DATA = 2  # JobResult.data (proto/jobworkerp/data/job_result.proto)
_DATA_JOB_ID = 1  # JobResultData.job_id


def _job_id_of(payload: bytes) -> int:
    """The job id in an encoded JobResult, read without decoding the rest of it (a DIRECT reply
    is passed on as it came); anything unusual is decoded whole."""
    result_data = message_field(payload, _RESULT_DATA)
    job_id = None if result_data is None else message_field(result_data, _DATA_JOB_ID)
    if job_id is None:
        return decode(data.JobResult, payload).data.job_id.value
    return decode(data.JobId, job_id).value


class _RedisJobWaiter(JobResultWaiter):
    """Waits for the published result, and now and then reads the job's result key too."""

    def __init__(self, bus: RedisResultBus, job_id: int) -> None:
        super().__init__()
        self._bus = bus
        self._job_id = job_id
        self.route: Reply | None = None  # a DIRECT caller's reply route write, confirmed in `wait`

    async def wait_delivered(self) -> data.JobResult | EncodedResult:
        if self.route is not None:
            try:
                await self.route.reply()
            except Exception as e:  # only the result key (read every RECHECK_S) tells us then
                log.warning("reply route of job %s not written (%s: %s); its result is polled", self._job_id,
                            type(e).__name__, e)
            self.route = None
        while True:
            with trio.move_on_after(RECHECK_S):
                return await super().wait_delivered()
            stored = await self._bus.stored_result(self._job_id)
            if stored is not None:
                self.deliver(stored)


class RedisResultBus:
    def __init__(self, client: Any, prefix: str, pipeliner: RedisPipeliner | None = None,
                 result_ttl_ms: int = 3_600_000, stream_bounds: StreamBounds | None = None) -> None:
        self._client = client
        self.result_ttl_ms = result_ttl_ms
        self._redis = pipeliner or RedisPipeliner(client)
        self._publish = client.register_script(_PUBLISH)
        self._prefix = prefix
        self._subscription = RedisSubscription(client)
        self._refcount: dict[str, int] = {}
        self._job_waiters: dict[str, set[JobResultWaiter]] = {}
        self._worker_streams: dict[str, set[WorkerResultStream]] = {}
        self._stream_bounds = stream_bounds or StreamBounds()
        self._worker_changed: list[Callable[[int], None]] = []
        self._job_cancel: list[Callable[[int], object]] = []
        self._lock = trio.Lock()  # subscribe / unsubscribe in order
        self._leaving: set[str] = set()  # topics without listeners whose UNSUBSCRIBE is not confirmed
        self._unreachable = False  # the last unsubscribe could not reach Redis: leave them to the retry loop
        self._nursery: trio.Nursery | None = None  # where unsubscribes run, off the caller's path
        self.reply_routes_key = f"{prefix}JOB_REPLY_TO"  # job id -> reply topic of its DIRECT caller
        self.reply_topic = f"{prefix}direct_reply:{uuid.uuid4().hex}"

    # --- topics ------------------------------------------------------------------------
    def job_topic(self, job_id: int) -> str:
        return f"{self._prefix}job_result_changed:job:{job_id}"

    def result_key(self, job_id: int) -> str:
        return f"{self._prefix}job_result:{job_id}"

    def worker_topic(self, worker_id: int) -> str:
        return f"{self._prefix}job_result_changed:worker:{worker_id}"

    @property
    def _worker_changed_topic(self) -> str:
        return f"{self._prefix}worker_changed"

    @property
    def _job_cancel_topic(self) -> str:
        return f"{self._prefix}job_cancel"

    # --- lifecycle -----------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read the shared subscription until cancelled (one task per process)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._subscription.messages, self._on_message)
            await self._subscription.subscribe(self._worker_changed_topic)
            await self._subscription.subscribe(self._job_cancel_topic)
            await self._subscription.subscribe(self.reply_topic)
            self._nursery = nursery
            nursery.start_soon(self._unsubscribe_leftovers)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                # Closing: a listener leaving from now on unsubscribes itself (starting a task
                # here raised "Nursery is closed to new arrivals" and ended a stopping server).
                self._nursery = None

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + UNSUBSCRIBE_S):
            await self._subscription.aclose()

    @asynccontextmanager
    async def _held(self, topic: str) -> AsyncIterator[None]:
        """Hold one reference to the topic's subscription (the first one subscribes) while
        inside. Dropped on the way out only if it was taken: a listener cancelled while it waited
        for the lock took none, and dropping one anyway unsubscribed the topic under the
        listeners still waiting on it (tests/redis_state/test_result_bus_subscriptions.py)."""
        taken = False
        try:
            async with self._lock:
                count = self._refcount.get(topic, 0)
                self._refcount[topic] = count + 1
                taken = True  # no checkpoint since the count: a cancel from here on drops it
                if count == 0:
                    await self._subscription.subscribe(topic)
            yield
        finally:
            if taken:
                await self._release(topic)

    def _drop(self, topic: str) -> bool:
        """Give back one reference; True when it was the last. Synchronous, so no lock wait,
        deadline or cancel can lose it (a reference never given back keeps its topic subscribed
        for as long as the process lives)."""
        count = self._refcount.get(topic, 0) - 1
        if count > 0:
            self._refcount[topic] = count
            return False
        self._refcount.pop(topic, None)
        self._leaving.add(topic)
        return True

    async def _release(self, topic: str) -> None:
        """Drop a listener's subscription, unsubscribing in the background: a DIRECT caller or
        Listen gets its answer without waiting for the UNSUBSCRIBE round trip. While Redis
        cannot be reached, the unsubscribe is left to `_unsubscribe_leftovers`."""
        if not self._drop(topic) or self._unreachable:
            return
        if self._nursery is not None:
            self._nursery.start_soon(self._unsubscribe, topic)
        else:  # not running: shielded (a cancelled listener must still unsubscribe), but bounded
            with trio.CancelScope(shield=True):
                await self._unsubscribe(topic)

    async def _unsubscribe(self, topic: str) -> bool:
        """Unsubscribe a topic nobody listens to, unless a listener came back meanwhile; False
        when Redis could not be reached. A topic leaves `_leaving` only once Redis has confirmed
        its UNSUBSCRIBE (the connection no longer holds it): until then `_unsubscribe_leftovers`
        tries again. Bounded, and an outage is waited out: with Redis unreachable, the
        UNSUBSCRIBE that failed here ended the process (tests/chaos/test_cross_process_races.py)."""
        with trio.move_on_after(UNSUBSCRIBE_S):
            async with self._lock:  # in order with the subscribes of listeners arriving
                if self._refcount.get(topic) or not self._subscription.holds(topic):
                    self._leaving.discard(topic)
                    return True
                try:
                    await self._subscription.unsubscribe(topic)
                except Exception as e:
                    # An outage, or redis-py reconnecting the shared connection for the reader at
                    # the same moment (RuntimeError "read() called while another coroutine is
                    # already waiting", which ended a front in CI): either way, try again later.
                    level = logging.DEBUG if is_outage(e) else logging.WARNING
                    log.log(level, "unsubscribing %s failed (%s: %s); trying again later", topic,
                            type(e).__name__, e)
                    self._unreachable = True
                    return False
                self._unreachable = False
                return True
        self._unreachable = True  # no answer within UNSUBSCRIBE_S
        return False

    async def _unsubscribe_leftovers(self) -> None:
        """Try again the unsubscribes Redis has not confirmed. An UNSUBSCRIBE that failed, or was
        cut off with the connection, stays subscribed: redis-py forgets a channel only when Redis
        confirms it, and subscribes again to every channel it has not forgotten when it
        reconnects — a topic nobody would ever unsubscribe again. One failure ends a round:
        while Redis is away, one attempt per round is enough to notice it is back."""
        while True:
            await trio.sleep(LEFTOVER_RETRY_S)
            for topic in list(self._leaving):
                if not await self._unsubscribe(topic):
                    break

    def _on_message(self, channel: bytes, payload: bytes) -> None:
        topic = channel.decode()
        if topic == self.reply_topic:  # a result for a DIRECT caller here, passed on as it came
            reply = EncodedResult(payload)
            for waiter in self._job_waiters.get(self.job_topic(_job_id_of(payload)), ()):
                waiter.deliver(reply)
            return
        if topic == self._worker_changed_topic:
            worker_id = int(payload)
            for callback in self._worker_changed:
                callback(worker_id)
            return
        if topic == self._job_cancel_topic:
            job_id = int(payload)
            for cancel in self._job_cancel:
                cancel(job_id)
            return
        waiters = self._job_waiters.get(topic)
        streams = self._worker_streams.get(topic)
        if not waiters and not streams:
            return
        result = decode(data.JobResult, payload)
        for waiter in waiters or ():
            waiter.deliver(result)
        if streams:
            deliver_to_streams(streams, result, topic)

    # --- ResultBus ---------------------------------------------------------------------
    @asynccontextmanager
    async def listen_job(self, job_id: int) -> AsyncIterator[JobResultWaiter]:
        topic = self.job_topic(job_id)
        waiter = _RedisJobWaiter(self, job_id)
        self._job_waiters.setdefault(topic, set()).add(waiter)
        try:
            async with self._held(topic):
                yield waiter
        finally:
            self._forget_waiter(topic, waiter)

    def _forget_waiter(self, topic: str, waiter: _RedisJobWaiter) -> None:
        waiters = self._job_waiters.get(topic)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._job_waiters[topic]

    @asynccontextmanager
    async def listen_direct(self, job_id: int) -> AsyncIterator[JobResultWaiter]:
        """`listen_job` for the caller of a DIRECT job that is about to be placed: the result comes
        on this process's reply topic (see the module docstring). The route is written without a
        checkpoint, so the placement's own writes, queued after it, land after it; its reply is
        awaited in `wait`. A caller that leaves without the result drops the route (the job may
        still end later: nobody here waits for it)."""
        field = str(job_id)
        route = None
        if self._nursery is not None:  # (else the reply topic is not read)
            route = self._redis.submit(lambda p: p.hset(self.reply_routes_key, field, self.reply_topic))
        if route is None:  # subscribe as any listener does
            async with self.listen_job(job_id) as fallback:
                yield fallback
            return
        topic = self.job_topic(job_id)
        waiter = _RedisJobWaiter(self, job_id)
        waiter.route = route
        self._job_waiters.setdefault(topic, set()).add(waiter)
        try:
            yield waiter
        finally:
            self._forget_waiter(topic, waiter)
            if waiter.delivered is None:  # (with its result, the job's settle dropped the route)
                self._redis.send(lambda p: p.hdel(self.reply_routes_key, field), f"job {job_id}'s reply route")

    @asynccontextmanager
    async def listen_worker(self, worker_id: int) -> AsyncIterator[WorkerResultStream]:
        topic = self.worker_topic(worker_id)
        stream = WorkerResultStream(worker_id, self._stream_bounds)
        self._worker_streams.setdefault(topic, set()).add(stream)
        try:
            async with self._held(topic):
                yield stream
        finally:
            streams = self._worker_streams.get(topic)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._worker_streams[topic]
            stream.close()

    async def publish(self, result: data.JobResult, *, to_job: bool, to_worker: bool) -> None:
        job_id = result.data.job_id.value
        keys = [self.result_key(job_id), self.reply_routes_key]
        if to_job:
            keys.append(self.job_topic(job_id))
        if to_worker:
            keys.append(self.worker_topic(result.data.worker_id.value))
        if len(keys) > 2:
            args = [encode(result), self.result_ttl_ms if to_job else 0, "1" if to_job else "0", job_id]
            if not self._redis.send_script(self._publish, keys, args, f"publish of job {job_id}'s result"):
                await self._redis.script(self._publish, keys, args)

    async def routed_jobs(self) -> list[int]:
        raw = await self._redis.call(lambda p: p.hkeys(self.reply_routes_key))
        return [int(i) for i in raw]

    async def drop_route(self, job_id: int) -> None:
        await self._redis.call(lambda p: p.hdel(self.reply_routes_key, str(job_id)))

    async def stored_result(self, job_id: int) -> data.JobResult | None:
        """The job's final result if it was published within the result TTL."""
        raw = await self._redis.call(lambda p: p.get(self.result_key(job_id)))
        return None if raw is None else decode(data.JobResult, raw)

    # --- worker change events ----------------------------------------------------------
    def on_worker_changed(self, callback: Callable[[int], None]) -> None:
        self._worker_changed.append(callback)

    async def publish_worker_changed(self, worker_id: int) -> None:
        await call_asyncio(self._client.publish, self._worker_changed_topic, str(worker_id))

    # --- job cancel events (JobService.Delete of a job running in another process) -------
    def on_job_cancel(self, callback: Callable[[int], object]) -> None:
        self._job_cancel.append(callback)

    async def publish_job_cancel(self, job_id: int) -> None:
        await self._redis.call(lambda p: p.publish(self._job_cancel_topic, str(job_id)))
