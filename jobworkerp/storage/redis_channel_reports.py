"""Scalable: worker processes' channel reports in Redis (storage/channel_reports.py).

Two keys under the deployment prefix: `channel-reports` (HASH: instance id -> encoded report)
and `channel-reports-until` (ZSET: instance id -> the time it stops being fresh). Both scripts
read the time from Redis itself (TIME), as the job queue's leases do, so clocks that differ
between hosts never make a live worker look stale or a dead one fresh. A worker killed without
withdrawing its report is dropped by the first read after its report expired.
"""

from __future__ import annotations

from typing import Any

from jobworkerp.storage.redis_pipeline import RedisPipeliner

_NOW = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

# KEYS: reports hash, deadlines zset. ARGV: instance id, report, valid ms.
_PUBLISH = _NOW + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""

# KEYS: reports hash, deadlines zset. Returns the fresh reports.
_FRESH = _NOW + """
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(stale) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')
if #live == 0 then return {} end
return redis.call('HMGET', KEYS[1], unpack(live))
"""

# KEYS: reports hash, deadlines zset. ARGV: instance id.
_WITHDRAW = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


class RedisChannelReports:
    """This process's report under `instance_id`, and everyone's fresh ones."""

    def __init__(self, client: Any, prefix: str, pipeliner: RedisPipeliner, instance_id: str) -> None:
        self._keys = [f"{prefix}channel-reports", f"{prefix}channel-reports-until"]
        self._pipeliner = pipeliner
        self._instance_id = instance_id
        self._publish = client.register_script(_PUBLISH)
        self._fresh = client.register_script(_FRESH)
        self._withdraw = client.register_script(_WITHDRAW)

    async def publish(self, report: bytes, valid_ms: int) -> None:
        await self._pipeliner.script(self._publish, self._keys, [self._instance_id, report, valid_ms])

    async def withdraw(self) -> None:
        await self._pipeliner.script(self._withdraw, self._keys, [self._instance_id])

    async def fresh(self) -> list[bytes]:
        return [bytes(r) for r in await self._pipeliner.script(self._fresh, self._keys, []) if r is not None]
