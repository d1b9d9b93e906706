"""Small Redis-backed stores shared by every process in Scalable mode: job status and uniq_key.

Each operation is one command or one Lua script, sent through the shared RedisPipeliner so that
concurrent jobs share round trips.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.job_status import Confirm
from jobworkerp.storage.redis_pipeline import RedisPipeliner

# Release a uniq_key only if this job still holds it (atomic check-and-delete of two hashes).
_RELEASE_UNIQ = """
local key = redis.call('HGET', KEYS[2], ARGV[1])
if key then
  redis.call('HDEL', KEYS[2], ARGV[1])
  if redis.call('HGET', KEYS[1], key) == ARGV[1] then
    redis.call('HDEL', KEYS[1], key)
  end
end
return 1
"""

# Take a uniq_key for a job: returns 0 when taken now (or already ours), else the holder's id.
_ACQUIRE_UNIQ = """
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and holder ~= ARGV[2] then
  return holder
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return 0
"""


def _hset(key: str, field: str, value: int) -> Callable[[Any], Any]:
    return lambda pipe: pipe.hset(key, field, value)


def _hdel(key: str, field: str) -> Callable[[Any], Any]:
    return lambda pipe: pipe.hdel(key, field)


class RedisJobStatusStore:
    """JobStatusStore in one hash: job id -> JobStatus number."""

    def __init__(self, client: Any, prefix: str, pipeliner: RedisPipeliner | None = None) -> None:
        self._redis = pipeliner or RedisPipeliner(client)
        self.key = f"{prefix}JOB_STATUS"

    # Status writes are informational and sent without waiting for the reply (in order, so a
    # job's RUNNING never lands after its final delete): they cost no round trip on the job path.
    async def set(self, job_id: int, status: data.JobStatus, *, confirm: bool = False) -> None:
        op = _hset(self.key, str(job_id), int(status))
        if confirm or not self._redis.send(op, f"job {job_id} status"):
            await self._redis.call(op)

    async def set_ahead(self, job_id: int, status: data.JobStatus) -> Confirm | None:
        # No checkpoint here: the write is queued before the caller's next command.
        reply = self._redis.submit(_hset(self.key, str(job_id), int(status)))
        return None if reply is None else reply.reply

    async def get(self, job_id: int) -> data.JobStatus | None:
        raw = await self._redis.call(lambda p: p.hget(self.key, str(job_id)))
        return None if raw is None else data.JobStatus(int(raw))

    async def delete(self, job_id: int) -> None:
        op = _hdel(self.key, str(job_id))
        if not self._redis.send(op, f"job {job_id} status"):
            await self._redis.call(op)

    async def all(self) -> list[tuple[int, data.JobStatus]]:
        raw = await self._redis.call(lambda p: p.hgetall(self.key))
        return sorted((int(k), data.JobStatus(int(v))) for k, v in raw.items())


class RedisUniqKeyGuard:
    """UniqKeyGuard in two hashes: key -> holder job id, and job id -> key (for release by id)."""

    def __init__(self, client: Any, prefix: str, pipeliner: RedisPipeliner | None = None) -> None:
        self._redis = pipeliner or RedisPipeliner(client)
        self.keys = [f"{prefix}UNIQ_HOLDER", f"{prefix}UNIQ_OF_JOB"]
        self._acquire = client.register_script(_ACQUIRE_UNIQ)
        self._release = client.register_script(_RELEASE_UNIQ)

    async def acquire(self, key: str, job_id: int) -> int | None:
        holder = int(await self._redis.script(self._acquire, self.keys, [key, str(job_id)]))
        return None if holder == 0 else holder

    async def release(self, job_id: int) -> None:
        await self._redis.script(self._release, self.keys, [str(job_id)])

    async def holders(self) -> list[int]:
        """Every job id that holds a key (for the orphan sweep)."""
        raw = await self._redis.call(lambda p: p.hkeys(self.keys[1]))
        return [int(i) for i in raw]

