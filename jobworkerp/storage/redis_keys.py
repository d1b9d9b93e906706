"""Names of the Redis keys of the job queue, all under one deployment prefix (e.g. "jw:").

Kept in one place so the Python side, the Lua scripts (which get the stems as arguments and
append a channel or instance id themselves) and anyone debugging with redis-cli agree.

Fixed keys end in a word ("queue-jobs"), per-channel / per-instance keys in a colon stem
("queue:" + channel), so no channel or instance name can collide with a fixed key.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueKeys:
    """Key layout of `RedisJobQueue` (see that module for what each key holds)."""

    prefix: str

    @property
    def queue_stem(self) -> str:
        """ZSET per channel: job id -> score (priority rank * 2^50 + push sequence)."""
        return f"{self.prefix}queue:"

    @property
    def wake_stem(self) -> str:
        """LIST per channel: at most one wake-up token, fed by push, waited on with BLPOP."""
        return f"{self.prefix}queue-wake:"

    @property
    def unblock_stem(self) -> str:
        """LIST per instance and channel: a token that ends this instance's own blocked wait on the
        channel (a popper that is cancelled), fed only by that instance."""
        return f"{self.prefix}queue-unblock:"

    @property
    def inflight_stem(self) -> str:
        """HASH per worker instance: job id -> packed (score, channel, job bytes) while in flight."""
        return f"{self.prefix}inflight:"

    @property
    def jobs(self) -> str:
        """HASH: job id -> encoded data.Job, for queued jobs only."""
        return f"{self.prefix}queue-jobs"

    @property
    def channels(self) -> str:
        """HASH: job id -> channel, for queued jobs only (so remove() finds the queue)."""
        return f"{self.prefix}queue-channels"

    @property
    def sequence(self) -> str:
        """STRING counter: push order (FIFO within one priority)."""
        return f"{self.prefix}queue-seq"

    @property
    def instances(self) -> str:
        """ZSET: worker instance id -> lease expiry (Redis server time, ms)."""
        return f"{self.prefix}instances"

    @property
    def crashes(self) -> str:
        """HASH: job id -> how many dead instances held it in flight."""
        return f"{self.prefix}crashes"

    def queue(self, channel: str) -> str:
        return self.queue_stem + channel

    def wake(self, channel: str) -> str:
        return self.wake_stem + channel

    def unblock(self, instance_id: str, channel: str) -> str:
        return f"{self.unblock_stem}{len(instance_id)}:{instance_id}{channel}"

    def inflight(self, instance_id: str) -> str:
        return self.inflight_stem + instance_id
