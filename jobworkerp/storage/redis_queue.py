"""Redis job queue for Scalable mode, with reliable fetch (a dead worker's jobs come back).

Layout (names in `redis_keys.QueueKeys`, all under the deployment prefix):

* ``queue:{channel}`` ZSET job id -> score = priority rank * 2^50 + push sequence. One sorted set
  per channel instead of three lists because: pop is one ZPOPMIN (strict priority, then FIFO);
  `remove` is an O(log n) ZREM instead of an O(n) LREM; a reaped job goes back with its original
  score, i.e. to its old place; and membership keeps a job id in a queue at most once. Scores stay
  below 3 * 2^50 < 2^53, so they are exact in Redis doubles and in Lua numbers.
* ``queue-jobs`` / ``queue-channels`` HASHes: job id -> encoded `Ticket` / channel, for queued jobs only.
* ``inflight:{instance}`` HASH job id -> packed (score, channel, job bytes) while a worker process
  runs it; self-contained, so the job can be re-queued exactly as it was, and a re-push of the same
  id (a retry) never collides with the in-flight copy.
* ``instances`` ZSET instance id -> lease expiry in Redis server time (ms), refreshed by the heartbeat
  (and by pop, since a popping process is alive).
* ``crashes`` HASH job id -> number of dead instances that held the job; deleted on ack, remove and
  poison.
* ``queue-wake:{channel}`` LIST holding at most one token: push (and a pop that leaves work behind)
  adds it, idle poppers wait for it with BLPOP. Lua cannot block, so this list is the wake-up path.
  The BLPOP and the POP script after it go out as one pipeline: Redis runs the POP as soon as the
  BLPOP returns, so a woken popper costs one round trip, not two. A cancelled popper ends its own
  wait through ``queue-unblock:...`` (a second key its BLPOP watches) and gives back what the POP
  took, so the cancel is exact.

Every state change is one Lua script, i.e. atomic and one round trip. Scripts build per-channel and
per-instance keys from stems passed as arguments, so this needs a single Redis (not Cluster).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any

import outcome
import trio
from redis.exceptions import RedisError

from jobworkerp.aio import call_asyncio, run_redis_pipeline
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.queue import PoisonHandler, Ticket
from jobworkerp.storage.redis_keys import QueueKeys
from jobworkerp.storage.redis_pipeline import RedisPipeliner, evalsha
from jobworkerp.storage.redis_wire import RedisWire

log = logging.getLogger(__name__)

# Pop order: rank 0 (HIGH) first. Unknown priorities are treated as MEDIUM, as in MemoryJobQueue.
_RANK = {int(data.Priority.HIGH): 0, int(data.Priority.MEDIUM): 1, int(data.Priority.LOW): 2}
_SHIELD_S = 5.0  # longest we wait, shielded from cancellation, for a script that moves a job
_REAP_BATCH = 16  # dead instances reaped per maintenance tick (bounds one script's run time)
_ID_PAGE = 1000  # queued ids read per round trip in queued_ids
_WAKE_TTL_MS = 60_000  # an unclaimed wake-up token is useless after a while; let it expire
# An in-flight record of this instance that no pop here returned, still there after this long, is
# a pop whose answer was lost (see `_release_orphans`); a pop's answer takes milliseconds.
ORPHAN_GRACE_S = 10.0

# --- Lua building blocks, prepended to the scripts that use them --------------------------------

# Redis server time in ms: every host agrees on lease expiry, whatever its own clock says.
_LUA_NOW = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# Leave exactly one wake-up token on a channel. One is enough: a popper that takes a job while
# more are queued re-notifies (see POP), so waiters wake one after another; trimming keeps idle
# channels from piling up tokens that would only cause empty pops.
_LUA_NOTIFY = f"""
local function notify(wake_key)
  redis.call('RPUSH', wake_key, '1')
  redis.call('LTRIM', wake_key, -1, -1)
  redis.call('PEXPIRE', wake_key, {_WAKE_TTL_MS})
end
"""

# In-flight record: "<score> <#channel> <channel><job bytes>" (length-prefixed: any channel name).
_LUA_RECORD = """
local function pack(score, channel, job)
  return score .. ' ' .. #channel .. ' ' .. channel .. job
end
local function unpack_record(rec)
  local a = string.find(rec, ' ', 1, true)
  local b = string.find(rec, ' ', a + 1, true)
  local n = tonumber(string.sub(rec, a + 1, b - 1))
  return string.sub(rec, 1, a - 1), string.sub(rec, b + 1, b + n), string.sub(rec, b + n + 1)
end
"""

# Put an in-flight job back at its original score (its old place and priority) and wake a popper.
# Skipped when the id is queued already: that copy was pushed later (a retry) and wins.
_LUA_REQUEUE = _LUA_NOTIFY + """
local function requeue(jobs, channels, queue_stem, wake_stem, id, score, channel, job)
  if redis.call('HEXISTS', jobs, id) == 1 then return false end
  redis.call('ZADD', queue_stem .. channel, score, id)
  redis.call('HSET', jobs, id, job)
  redis.call('HSET', channels, id, channel)
  notify(wake_stem .. channel)
  return true
end
"""

# --- Scripts ----------------------------------------------------------------------------------

# PUSH: queue a job (an id already queued is moved: new bytes, new channel, back of its priority).
# With ARGV[6] = '1' (a re-run) it also drops this instance's in-flight record of the job's
# previous run, in the same step: acked separately, the ack could land after the new copy was
# popped and delete the new copy's record instead (then a release or a crash would lose it).
# KEYS: jobs, channels, sequence, queue:{channel}, queue-wake:{channel}, inflight:{instance}, crashes
# ARGV: queue_stem, id, channel, rank (0..2), job bytes, ack ('1' / '0').  Returns 1.
PUSH = _LUA_NOTIFY + """
local id = ARGV[2]
if ARGV[6] == '1' and redis.call('HDEL', KEYS[6], id) == 1 then
  redis.call('HDEL', KEYS[7], id)
end
local old = redis.call('HGET', KEYS[2], id)
if old then redis.call('ZREM', ARGV[1] .. old, id) end
local seq = redis.call('INCR', KEYS[3])
-- %d, not tostring: tostring keeps only 14 digits
redis.call('ZADD', KEYS[4], string.format('%d', tonumber(ARGV[4]) * 1125899906842624 + seq), id)
redis.call('HSET', KEYS[1], id, ARGV[5])
redis.call('HSET', KEYS[2], id, ARGV[3])
notify(KEYS[5])
return 1
"""

# POP: move up to ARGV[4] of the best jobs of a channel into this instance's in-flight record,
# refresh the lease (which also registers an instance that pops before its first heartbeat, so
# every in-flight record belongs to a known instance and can be reaped), and pass the wake-up on
# if work remains. A job with a crash count came back from a dead instance: the reply says so
# (redelivered).
# KEYS: queue:{channel}, jobs, channels, inflight:{instance}, instances, queue-wake:{channel}, crashes
# ARGV: channel, instance id, lease ms, most jobs.
# Returns {jobs left in the queue, job bytes 1, 1 if redelivered else 0, job bytes 2, ...}.
POP = _LUA_NOW + _LUA_NOTIFY + _LUA_RECORD + """
local out = {0}
local most = tonumber(ARGV[4])
while #out < 2 * most + 1 do
  local head = redis.call('ZPOPMIN', KEYS[1])
  if #head == 0 then break end
  local id, score = head[1], head[2]
  local job = redis.call('HGET', KEYS[2], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  if job then  -- (a queue entry without a body cannot happen; skip it rather than fail)
    redis.call('HSET', KEYS[4], id, pack(score, ARGV[1], job))
    table.insert(out, job)
    table.insert(out, redis.call('HEXISTS', KEYS[7], id))
  end
end
if #out > 1 then
  redis.call('ZADD', KEYS[5], string.format('%d', now_ms() + tonumber(ARGV[3])), ARGV[2])
  out[1] = redis.call('ZCARD', KEYS[1])
  if out[1] > 0 then notify(KEYS[6]) end
end
return out
"""

# ACK: this instance is done with a job. A no-op when the record is gone (the instance was
# presumed dead and reaped meanwhile: the job belongs to whoever has it now, counter included).
# KEYS: inflight:{instance}, crashes.  ARGV: id.  Returns 1 when the record was dropped, else 0.
ACK = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

# RELEASE: give one in-flight job of this instance back to its queue (no crash counted); used when
# pop is cancelled after the job was moved, or a run is interrupted before it could end.
# KEYS: inflight:{instance}, jobs, channels.  ARGV: id, queue_stem, wake_stem.  Returns 1 or 0.
RELEASE = _LUA_REQUEUE + _LUA_RECORD + """
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local score, channel, job = unpack_record(rec)
requeue(KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[1], score, channel, job)
return 1
"""

# RETIRE: graceful exit: every job still in flight here goes back (no crash counted) and the
# instance's lease is dropped.
# KEYS: inflight:{instance}, jobs, channels, instances.  ARGV: instance id, queue_stem, wake_stem.
# Returns how many jobs went back.
RETIRE = _LUA_REQUEUE + _LUA_RECORD + """
local flat = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #flat, 2 do
  local score, channel, job = unpack_record(flat[i + 1])
  if requeue(KEYS[2], KEYS[3], ARGV[2], ARGV[3], flat[i], score, channel, job) then n = n + 1 end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return n
"""

# REMOVE: take a queued job out (not an in-flight one: those are in no queue).
# KEYS: jobs, channels, crashes.  ARGV: queue_stem, id.  Returns the job bytes or nil.
REMOVE = """
local channel = redis.call('HGET', KEYS[2], ARGV[2])
if not channel then return false end
redis.call('ZREM', ARGV[1] .. channel, ARGV[2])
local job = redis.call('HGET', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return job
"""

# TICK: heartbeat, then reap. Refreshes this instance's lease first (so it never reaps itself),
# then for up to ARGV[7] instances whose lease has expired: count a crash for each of their
# in-flight jobs, re-queue it at its original score, or, at max_crashes, drop it and return it
# for on_poison; then delete the instance. Atomic, so two reapers cannot re-queue a job twice:
# the second finds the instance gone.
# KEYS: instances, crashes, jobs, channels
# ARGV: instance id, lease ms, max_crashes, inflight_stem, queue_stem, wake_stem, batch
# Returns {was_missing (1 = lease had been lost, or first beat), requeued, reaped instances,
#          id1, job1, crashes1, id2, ...} where the triples are the poisoned jobs.
TICK = _LUA_NOW + _LUA_REQUEUE + _LUA_RECORD + """
local now = now_ms()
local missing = redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
local out = {missing, 0, 0}
local max_crashes = tonumber(ARGV[3])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now), 'LIMIT', 0, tonumber(ARGV[7]))
for _, inst in ipairs(dead) do
  local key = ARGV[4] .. inst
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    local id = flat[i]
    local score, channel, job = unpack_record(flat[i + 1])
    local n = redis.call('HINCRBY', KEYS[2], id, 1)
    if n >= max_crashes then
      redis.call('HDEL', KEYS[2], id)
      table.insert(out, id)
      table.insert(out, job)
      table.insert(out, n)
    elseif requeue(KEYS[3], KEYS[4], ARGV[5], ARGV[6], id, score, channel, job) then
      out[2] = out[2] + 1
    end
  end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], inst)
  out[3] = out[3] + 1
end
return out
"""

# INFLIGHT_IDS: ids in flight on any instance for the given channels (read only).
# KEYS: instances.  ARGV: inflight_stem, channel1, channel2, ...  Returns the ids.
INFLIGHT_IDS = _LUA_RECORD + """
local wanted = {}
for i = 2, #ARGV do wanted[ARGV[i]] = true end
local ids = {}
for _, inst in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local flat = redis.call('HGETALL', ARGV[1] .. inst)
  for i = 1, #flat, 2 do
    local _, channel = unpack_record(flat[i + 1])
    if wanted[channel] then table.insert(ids, flat[i]) end
  end
end
return ids
"""


# HELD_IDS: which of the given ids are queued or in flight on any instance (read only).
# KEYS: jobs, instances.  ARGV: inflight_stem, id1, id2, ...  Returns the held ids.
HELD_IDS = """
local instances = redis.call('ZRANGE', KEYS[2], 0, -1)
local held = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local found = redis.call('HEXISTS', KEYS[1], id) == 1
  if not found then
    for _, inst in ipairs(instances) do
      if redis.call('HEXISTS', ARGV[1] .. inst, id) == 1 then found = true break end
    end
  end
  if found then table.insert(held, id) end
end
return held
"""


def priority_rank(job: data.Job) -> int:
    """0 for HIGH, 1 for MEDIUM (and unknown values), 2 for LOW: lower scores pop first."""
    priority = job.data.priority
    return _RANK.get(int(priority), 1)


def poison_reason(crashes: int, max_crashes: int) -> str:
    return (f"job was in flight on {crashes} worker processes that died (JOB_QUEUE_MAX_CRASHES={max_crashes}); "
            f"not retried again")


class RedisJobQueue:
    """`JobQueue` over Redis, shared by every worker process; see the module docstring for keys.

    `client` is a redis.asyncio client from `jobworkerp.aio.open_redis` (bytes responses, i.e. without
    decode_responses); the asyncio bridge must be open (all but the per-job round trips use it).
    """

    def __init__(self, client: Any, *, prefix: str, instance_id: str, lease_ms: int = 10_000, max_crashes: int = 3,
                 poll_timeout_s: float = 1.0, pipeliner: RedisPipeliner | None = None,
                 orphan_grace_s: float = ORPHAN_GRACE_S) -> None:
        if lease_ms <= 0 or max_crashes < 1 or poll_timeout_s <= 0:
            raise ValueError("lease_ms and poll_timeout_s must be positive, max_crashes at least 1")
        self._client = client
        # push and ack share round trips with the other per-job Redis work of this process.
        self._redis = pipeliner or RedisPipeliner(client)
        self.keys = QueueKeys(prefix)
        self.instance_id = instance_id
        self.lease_ms = lease_ms
        self.max_crashes = max_crashes
        self.poll_timeout_s = poll_timeout_s
        self.inflight_key = self.keys.inflight(instance_id)
        # One Redis-side waiter per channel per process: the other local poppers of a channel queue
        # on this (fair) lock, so each channel's blocking BLPOPs hold one connection, its own
        # (`_wires`: trio sockets, not the client's pool, which they could otherwise drain).
        self._channel_locks: dict[str, trio.Lock] = {}
        self._wires: dict[str, RedisWire] = {}
        # Jobs a pop here returned (id -> when), and in-flight records no pop returned (id -> first
        # seen): see `_release_orphans`.
        self._taken: dict[int, float] = {}
        self._suspects: dict[int, float] = {}
        self.orphan_grace_s = orphan_grace_s
        self._push = client.register_script(PUSH)
        self._pop = client.register_script(POP)
        self._ack = client.register_script(ACK)
        self._release = client.register_script(RELEASE)
        self._retire = client.register_script(RETIRE)
        self._remove = client.register_script(REMOVE)
        self._tick = client.register_script(TICK)
        self._inflight_ids = client.register_script(INFLIGHT_IDS)
        self._held_ids = client.register_script(HELD_IDS)

    # --- JobQueue ---------------------------------------------------------------------------

    async def push(self, channel: str, ticket: Ticket, *, ack: bool = False) -> None:
        k = self.keys
        keys = [k.jobs, k.channels, k.sequence, k.queue(channel), k.wake(channel), self.inflight_key, k.crashes]
        args = [k.queue_stem, ticket.job_id, channel, priority_rank(ticket.job), ticket.encode(), "1" if ack else "0"]
        await self._redis.script(self._push, keys, args)

    async def pop(self, channel: str, *, found_empty: bool = False) -> Ticket:
        """Take the next job; wait on the channel's wake-up list while it is empty.

        Cancel-safe: the job moves only inside the POP script, and a pop cancelled while that script
        runs gives the job back (see `_take_many`, `_wait_and_take`).

        `found_empty` (a `try_pop` just came back empty) skips the first look, a POP round trip
        that would find the same: a job pushed since left a wake-up token, so the BLPOP returns
        at once, and one that another popper took needs no look.
        """
        ticket, _ = await self.pop_reporting(channel, found_empty=found_empty)
        return ticket

    async def pop_reporting(self, channel: str, *, found_empty: bool = False) -> tuple[Ticket, bool]:
        """`pop`, and whether it left the channel's queue empty (`queue.BatchPop`)."""
        lock = self._channel_locks.get(channel)
        if lock is None:
            lock = self._channel_locks[channel] = trio.Lock()
        try:  # a free lock is taken without the scheduling round `acquire` always costs
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            if not found_empty:
                tickets, drained = await self._take_many(channel, 1)
                if tickets:
                    return tickets[0], drained
            while True:
                ticket, drained = await self._wait_and_take(channel)
                if ticket is not None:
                    return ticket, drained
        finally:
            lock.release()

    async def try_pop(self, channel: str) -> Ticket | None:
        return await self._take(channel)

    async def try_pop_many(self, channel: str, most: int) -> tuple[list[Ticket], bool]:
        """`try_pop` of up to `most` jobs in one round trip (`queue.BatchPop`); True when it left
        the channel's queue empty."""
        return await self._take_many(channel, most)

    async def ack(self, job_id: int) -> None:
        # Awaited, not sent and forgotten: a lost ack leaves the job in flight here, and a restart
        # would then queue it again — a job that has ended (or waits as a row) running twice.
        await self._redis.script(self._ack, [self.inflight_key, self.keys.crashes], [job_id])

    async def release(self, job_id: int) -> None:
        k = self.keys
        await self._redis.script(self._release, [self.inflight_key, k.jobs, k.channels],
                                 [job_id, k.queue_stem, k.wake_stem])

    async def remove(self, job_id: int) -> Ticket | None:
        k = self.keys
        raw = await call_asyncio(self._remove, keys=[k.jobs, k.channels, k.crashes], args=[k.queue_stem, job_id])
        return None if raw is None else Ticket.decode(raw)

    async def find(self, job_id: int) -> Ticket | None:
        raw = await self._redis.call(lambda p: p.hget(self.keys.jobs, str(job_id)))
        return None if raw is None else Ticket.decode(raw)

    async def length(self, channel: str) -> int:
        return int(await call_asyncio(self._client.zcard, self.keys.queue(channel)))

    async def lengths_by_priority(self, channels: Iterable[str]) -> dict[tuple[str, int], int]:
        """One ZCOUNT per channel and priority rank (a rank is a band of scores), in one round trip."""
        keys = [(channel, priority, rank) for channel in dict.fromkeys(channels) for priority, rank in _RANK.items()]
        replies = await run_redis_pipeline(self._client, [_zcount_rank(self.keys.queue(channel), rank)
                                                          for channel, _, rank in keys])
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return {(channel, priority): int(count) for (channel, priority, _), count in zip(keys, replies, strict=True)}

    async def queued_ids(self, channels: Iterable[str]) -> set[int]:
        """Queued ids read in score order, a page per round trip (paging by score, not by index,
        so pops running meanwhile cannot shift entries past us), plus every in-flight id."""
        wanted = list(dict.fromkeys(channels))
        if not wanted:
            return set()
        ids: set[int] = set()
        for channel in wanted:
            ids.update(await self._queued_ids_of(channel))
        # Through the pipeliner, so acks sent before this read are already applied.
        raw = await self._redis.script(self._inflight_ids, [self.keys.instances],
                                       [self.keys.inflight_stem, *wanted])
        ids.update(int(i) for i in raw)
        return ids

    async def held(self, job_ids: Iterable[int]) -> set[int]:
        ids = [str(i) for i in job_ids]
        held: set[int] = set()
        for start in range(0, len(ids), 500):  # bounded script runs: Redis serves others between them
            raw = await self._redis.script(self._held_ids, [self.keys.jobs, self.keys.instances],
                                           [self.keys.inflight_stem, *ids[start:start + 500]])
            held.update(int(i) for i in raw)
        return held

    async def run_maintenance(self, on_poison: PoisonHandler, *,
                              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Heartbeat + reap every lease_ms / 3 until cancelled.

        Reports started once the first heartbeat holds the lease (a failure there is raised, so a
        process that cannot reach Redis does not start); later Redis errors are logged and retried,
        since other processes take over our jobs only after a whole lease without heartbeats.
        on_poison runs in its own task so a slow handler cannot delay the heartbeat; a poisoned job
        is already gone from Redis, so one whose handler is cancelled (shutdown) is lost.
        """
        async with trio.open_nursery() as handlers:
            await self._maintain_once(handlers, on_poison, first=True)
            task_status.started()
            failing = False  # logged once per outage, not at every beat of it
            while True:
                await trio.sleep(self.lease_ms / 3000)
                try:
                    await self._maintain_once(handlers, on_poison, first=False)
                    await self._release_orphans()
                except (RedisError, OSError) as exc:
                    if not failing:
                        log.warning("job queue heartbeat of %s failed (retrying every %.1f s): %s", self.instance_id,
                                    self.lease_ms / 3000, exc)
                    failing = True
                    continue
                if failing:
                    log.warning("job queue heartbeat of %s: Redis answers again", self.instance_id)
                    failing = False

    async def drain_volatile(self) -> list[Ticket]:
        """Redis keeps the queue: nothing dies with this process."""
        return []

    # --- extras -----------------------------------------------------------------------------

    async def retire(self) -> int:
        """Graceful shutdown, after the runners stopped: return every job still in flight here to
        its queue (not counted as a crash) and drop this instance's lease; how many went back."""
        k = self.keys
        with trio.CancelScope(shield=True):  # after the acks still queued in the pipeliner
            returned = int(await self._redis.script(self._retire, [self.inflight_key, k.jobs, k.channels, k.instances],
                                                    [self.instance_id, k.queue_stem, k.wake_stem]))
        return returned

    async def close_connections(self) -> None:
        """Close the channels' waiting connections (at the storage's close, once nothing pops)."""
        wires, self._wires = self._wires, {}
        for wire in wires.values():
            await wire.aclose()

    # --- internals --------------------------------------------------------------------------

    async def _take(self, channel: str) -> Ticket | None:
        tickets, _ = await self._take_many(channel, 1)
        return tickets[0] if tickets else None

    async def _take_many(self, channel: str, most: int) -> tuple[list[Ticket], bool]:
        """One POP script call; shielded, because a cancel that lands after Redis moved the jobs
        but before we read the reply would leave them in flight here with nobody running them.
        If we were cancelled meanwhile, the jobs are released back to their queue and Cancelled
        raised. Through the pipeliner: under load the pop shares its round trip with the settles
        and status writes of the jobs already running."""
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _SHIELD_S) as scope:
            raw = await self._run_pop(channel, most)
        if scope.cancelled_caught:
            raise TimeoutError(f"Redis did not answer a pop of channel {channel!r} within {_SHIELD_S} s")
        tickets = self._tickets(raw)
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except trio.Cancelled:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + _SHIELD_S):
                for ticket in tickets:
                    await self.release(ticket.job_id)
            raise
        return tickets, int(raw[0]) == 0

    async def _wait_and_take(self, channel: str) -> tuple[Ticket | None, bool]:
        """Wait for the channel's wake-up (at most poll_timeout_s), then look: BLPOP and POP in
        one round trip (see the module docstring). The round trip is never cut off: a cancel
        ends the BLPOP through this instance's unblock key, the POP's jobs go back to their
        queue, and Cancelled is raised."""
        k = self.keys
        unblock = k.unblock(self.instance_id, channel)
        wire = self._wires.get(channel)
        if wire is None:
            wire = self._wires[channel] = RedisWire(self._client)
        ops = [_blpop([k.wake(channel), unblock], self.poll_timeout_s),
               evalsha(self._pop, self._pop_keys(channel), [channel, self.instance_id, self.lease_ms, 1])]
        done = trio.Event()
        replies: list[outcome.Outcome[list[Any]]] = []

        async def round_trip() -> None:
            with trio.CancelScope(shield=True):
                replies.append(await outcome.acapture(wire.round_trip, ops))
            done.set()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(round_trip)
                try:
                    await done.wait()
                except trio.Cancelled:
                    with trio.CancelScope(shield=True, deadline=trio.current_time() + _SHIELD_S):
                        try:
                            await self._redis.call(_token(unblock))
                        except Exception as e:  # the BLPOP then ends with its timeout
                            log.debug("unblocking the pop of channel %r failed: %s", channel, e)
                    raise
        except BaseException:
            # Cancelled while waiting, or while the nursery waited for the round trip's task to
            # end (its reply already in): what the POP took goes back. Bounded: should Redis not
            # answer, a job its POP took goes back through `_release_orphans`.
            with trio.CancelScope(shield=True, deadline=trio.current_time() + _SHIELD_S):
                await done.wait()
                popped = replies[0].unwrap()[1] if isinstance(replies[0], outcome.Value) else None
                if isinstance(popped, list):
                    for body in popped[1::2]:
                        await self.release(Ticket.decode(body).job_id)
            raise
        popped = replies[0].unwrap()[1]
        if isinstance(popped, Exception):  # e.g. NoScriptError after a Redis restart: look the usual way
            log.debug("pop after a wake-up of channel %r failed (%s); looking again", channel, popped)
            tickets, drained = await self._take_many(channel, 1)
        else:
            tickets, drained = self._tickets(popped), int(popped[0]) == 0
        return (tickets[0] if tickets else None), drained

    def _pop_keys(self, channel: str) -> list[str]:
        k = self.keys
        return [k.queue(channel), k.jobs, k.channels, self.inflight_key, k.instances, k.wake(channel), k.crashes]

    def _tickets(self, popped: list[Any]) -> list[Ticket]:
        """The tickets of a POP reply, recorded as taken by a pop here."""
        tickets = []
        now = trio.current_time()
        for body, redelivered in zip(popped[1::2], popped[2::2], strict=True):
            ticket = Ticket.decode(body)
            if int(redelivered):
                ticket = dataclasses.replace(ticket, redelivered=True)
            self._taken[ticket.job_id] = now
            tickets.append(ticket)
        return tickets

    async def _run_pop(self, channel: str, most: int) -> list[Any]:
        return await self._redis.script(self._pop, self._pop_keys(channel), [channel, self.instance_id,
                                                                             self.lease_ms, most])

    async def _queued_ids_of(self, channel: str) -> list[int]:
        key = self.keys.queue(channel)
        ids: list[int] = []
        low = "-inf"
        while True:
            page = await self._redis.call(_zrange_page(key, low))
            ids.extend(int(member) for member, _ in page)
            if len(page) < _ID_PAGE:
                return ids
            low = f"({int(page[-1][1])}"

    async def _maintain_once(self, handlers: trio.Nursery, on_poison: PoisonHandler, *, first: bool) -> None:
        k = self.keys
        out = await call_asyncio(self._tick, keys=[k.instances, k.crashes, k.jobs, k.channels],
                                 args=[self.instance_id, self.lease_ms, self.max_crashes, k.inflight_stem,
                                       k.queue_stem, k.wake_stem, _REAP_BATCH])
        missing, requeued, reaped = int(out[0]), int(out[1]), int(out[2])
        if missing and not first:
            log.warning("job queue lease of %s had expired: other workers may have re-queued its in-flight jobs",
                        self.instance_id)
        poisoned = out[3:]
        if reaped:
            log.warning("job queue: reaped %d dead worker instance(s): %d job(s) re-queued, %d given up",
                        reaped, requeued, len(poisoned) // 3)
        for i in range(0, len(poisoned), 3):
            handlers.start_soon(self._poison, on_poison, int(poisoned[i]), poisoned[i + 1], int(poisoned[i + 2]))

    async def _release_orphans(self) -> None:
        """Queue again what is in flight here although no pop here returned it.

        A pop moves the job into this instance's in-flight record inside Redis; if its answer
        is lost — the connection closed as Redis shut down, or the reply took longer than the pop
        waits — the job is in flight here with nobody running it, and since this instance stays
        alive, no reaper ever takes it back: a lost job (a Redis restart under load, in CI). A
        record no pop returned, still there `orphan_grace_s` later, goes back to its queue."""
        now = trio.current_time()
        raw = await self._redis.call(lambda p: p.hkeys(self.inflight_key))
        in_flight = {int(i) for i in raw}
        for job_id, at in list(self._taken.items()):
            if job_id not in in_flight and now - at > self.orphan_grace_s:
                del self._taken[job_id]  # ended (or went back) since: forget it
        for job_id in list(self._suspects):
            if job_id not in in_flight or job_id in self._taken:
                del self._suspects[job_id]
        for job_id in in_flight - self._taken.keys():
            if now - self._suspects.setdefault(job_id, now) >= self.orphan_grace_s:
                del self._suspects[job_id]
                await self.release(job_id)
                log.warning("job %s was in flight here but no pop here had it (its answer was lost); queued again",
                            job_id)

    async def _poison(self, on_poison: PoisonHandler, job_id: int, raw: bytes, crashes: int) -> None:
        """Hand a given-up job to the app; its failure must not stop the heartbeat."""
        try:
            ticket = Ticket.decode(raw)
        except Exception:
            log.exception("job queue: undecodable poisoned job %s dropped", job_id)
            return
        try:
            await on_poison(ticket, poison_reason(crashes, self.max_crashes))
        except Exception:
            log.exception("job queue: on_poison failed for job %s", job_id)


def _blpop(keys: list[str], timeout_s: float) -> Callable[[Any], Any]:
    return lambda pipe: pipe.blpop(keys, timeout=timeout_s)


def _token(key: str) -> Callable[[Any], Any]:
    """Leave a token that ends a BLPOP on `key` (which takes it); kept briefly if none is waiting."""
    return lambda pipe: pipe.eval("redis.call('RPUSH', KEYS[1], '1') redis.call('PEXPIRE', KEYS[1], ARGV[1])",
                                  1, key, _WAKE_TTL_MS)


def _zcount_rank(key: str, rank: int) -> Callable[[Any], Any]:
    """Count the entries of one priority rank: scores from rank * 2^50 up to the next rank's."""
    return lambda pipe: pipe.zcount(key, rank << 50, f"({(rank + 1) << 50}")


def _zrange_page(key: str, low: str) -> Callable[[Any], Any]:
    """One page of (member, score) from `low` up, for queued_ids."""
    return lambda pipe: pipe.zrange(key, low, "+inf", byscore=True, offset=0, num=_ID_PAGE, withscores=True)
