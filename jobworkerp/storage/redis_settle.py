"""`JobSettler` for Scalable mode: a job's final Redis step as one Lua script.

The script touches the keys of three stores (job status, uniq keys, this process's in-flight
record of the queue) and the result bus (result key + topics); it takes their names from those
stores, so the key layout stays defined in one place each.
"""

from __future__ import annotations

from typing import Any

from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.redis_bus import RedisResultBus
from jobworkerp.storage.redis_pipeline import RedisPipeliner
from jobworkerp.storage.redis_queue import RedisJobQueue
from jobworkerp.storage.redis_state import RedisJobStatusStore, RedisUniqKeyGuard
from jobworkerp.wire import encode

# KEYS: status hash, uniq holder, uniq of job, inflight:{instance}, crashes, reply routes, result key, topics...
# ARGV: job id, ack ('1' / '0'), result bytes ('' = none), result ttl ms, only if it has a status ('1' / '0').
# Returns 0 when ARGV[5] is '1' and the job had no status (nothing was changed), else 1.
# The job's reply route (its DIRECT caller's reply topic, `redis_bus.py`) gets the result too, and goes.
SETTLE = """
local id = ARGV[1]
if redis.call('HDEL', KEYS[1], id) == 0 and ARGV[5] == '1' then return 0 end
local route = redis.call('HGET', KEYS[6], id)
if route then redis.call('HDEL', KEYS[6], id) end
local key = redis.call('HGET', KEYS[3], id)
if key then
  redis.call('HDEL', KEYS[3], id)
  if redis.call('HGET', KEYS[2], key) == id then redis.call('HDEL', KEYS[2], key) end
end
if ARGV[2] == '1' and redis.call('HDEL', KEYS[4], id) == 1 then
  redis.call('HDEL', KEYS[5], id)
end
if ARGV[3] ~= '' then
  if tonumber(ARGV[4]) > 0 then redis.call('SET', KEYS[7], ARGV[3], 'PX', ARGV[4]) end
  for i = 8, #KEYS do redis.call('PUBLISH', KEYS[i], ARGV[3]) end
  if route then redis.call('PUBLISH', route, ARGV[3]) end
end
return 1
"""


class RedisJobSettler:
    def __init__(self, client: Any, pipeliner: RedisPipeliner, status: RedisJobStatusStore,
                 uniq_keys: RedisUniqKeyGuard, queue: RedisJobQueue, bus: RedisResultBus) -> None:
        self._redis = pipeliner
        self._script = client.register_script(SETTLE)
        self._fixed_keys = [status.key, *uniq_keys.keys, queue.inflight_key, queue.keys.crashes, bus.reply_routes_key]
        self._bus = bus

    async def settle(self, job_id: int, result: data.JobResult | None, *, to_worker: bool, ack: bool) -> None:
        keys = [*self._fixed_keys, self._bus.result_key(job_id)]
        payload = b""
        if result is not None:
            payload = encode(result)
            keys.append(self._bus.job_topic(job_id))
            if to_worker:
                keys.append(self._bus.worker_topic(result.data.worker_id.value))
        args = [job_id, "1" if ack else "0", payload, self._bus.result_ttl_ms, "0"]
        # In order with this process's other Redis work (a job's earlier status writes land
        # before its settle), and awaited: a settle sent and forgotten was lost when Redis went
        # away under it, leaving the job's status, uniq_key and in-flight record behind, and its
        # waiters without their result. Awaited, a failure reaches `JobLifecycle.finish`, which
        # waits the outage out and settles again (the script may then publish twice: a waiter
        # takes the first).
        await self._redis.script(self._script, keys, args)

    async def settle_orphan(self, job_id: int, result: data.JobResult, *, to_worker: bool) -> bool:
        keys = [*self._fixed_keys, self._bus.result_key(job_id), self._bus.job_topic(job_id)]
        if to_worker:
            keys.append(self._bus.worker_topic(result.data.worker_id.value))
        args = [job_id, "0", encode(result), self._bus.result_ttl_ms, "1"]
        return int(await self._redis.script(self._script, keys, args)) == 1
