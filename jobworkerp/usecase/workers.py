"""WorkerService operations: validation of a worker definition, persistence and the in-process worker cache.

The executor resolves the worker of every job, so lookups are served from a cache that is
invalidated by this module's own writes (in Standalone this process is the only writer).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Awaitable, Callable
from typing import cast

import trio

from jobworkerp.config import STANDALONE, Config
from jobworkerp.errors import InvalidArgument, NotFound
from jobworkerp.lifecycle.placement import channel_of
from jobworkerp.lifecycle.retry import retry_delay_ms
from jobworkerp.proto.jobworkerp import data
from jobworkerp.runners.policy import PolicyViolation, RunnerPolicy
from jobworkerp.runners.registry import RunnerRegistry
from jobworkerp.storage.rdb import Repository
from jobworkerp.usecase.next_workers import check_chains, check_links
from jobworkerp.usecase.paging import page

_RESPONSE_TYPES = {int(v) for v in data.ResponseType}
_QUEUE_TYPES = {int(v) for v in data.QueueType}
_RETRY_TYPES = {int(v) for v in data.RetryType}

# The MySQL columns' sizes (storage/mysql_schema.py), enforced in both modes: a definition that
# Standalone accepts must not be refused by Scalable storage, and a name is no place for megabytes.
NAME_MAX_CHARS = 128
CHANNEL_MAX_CHARS = 32
NAME_CACHE_MAX = 10_000  # worker names remembered for enqueue by name (only names of stored workers)
# lifecycle/retry.py computes interval * basis**retried before max_interval caps it, so the power
# must stay a finite float (e**709.78 is the largest) for every retry, even a capped one.
_EXPONENT_LIMIT = math.log(sys.float_info.max) - 1.0
# A growth factor past this is a typo or an attack: from a 1 ms interval, basis 100 passes a day
# at the fifth retry. (1e38 was accepted: a float32 holds it.)
MAX_BASIS = 100.0
# No retry may wait longer than this. A delay is added to the failure time and stored as an
# epoch-ms BIGINT: a LINEAR or uncapped EXPONENTIAL policy made delays past 2**63 ms (LINEAR's
# interval * (retried + 1) with 2**32 - 1 retries, or basis 2 with 64 retries), so placing the
# retry failed and the attempt ran again, for ever.
MAX_RETRY_DELAY_MS = 365 * 24 * 3600 * 1000


def _check_length(field: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise InvalidArgument(field, f"must be at most {limit} characters, got {len(value)}")


def check_retry_policy(policy: data.RetryPolicy) -> None:
    """Refuse a policy whose delays the retry arithmetic cannot compute: a failed job of such a
    worker fails again while its retry is being placed and goes back to run again, for ever
    (basis inf with interval 0 did at its first retry; basis 10 would at its 309th, max_interval
    or not, and with a small interval or cap that is minutes away)."""
    if int(policy.type) not in _RETRY_TYPES:
        raise InvalidArgument("retry_policy.type", f"unknown value {int(policy.type)}")
    if not math.isfinite(policy.basis) or not 1.0 <= policy.basis <= MAX_BASIS:
        raise InvalidArgument("retry_policy.basis", f"must be a finite number from 1.0 to {MAX_BASIS}, "
                                                    f"got {policy.basis}")
    if policy.type == data.RetryType.NONE or policy.max_retry == 0:
        return
    last = policy.max_retry - 1  # the `retried` count of the last retry: its delay is the largest
    if policy.type == data.RetryType.EXPONENTIAL and policy.basis > 1.0 \
            and last * math.log(policy.basis) > _EXPONENT_LIMIT:
        most = int(_EXPONENT_LIMIT / math.log(policy.basis)) + 1
        raise InvalidArgument("retry_policy.max_retry", f"with basis {policy.basis} the delay of retry "
                              f"{policy.max_retry} cannot be computed; at most {most} retries")
    longest = retry_delay_ms(policy, last)
    if longest > MAX_RETRY_DELAY_MS:
        raise InvalidArgument("retry_policy.max_interval", f"retry {policy.max_retry} would wait {longest} ms, more "
                              f"than {MAX_RETRY_DELAY_MS} ms (a year); set max_interval to cap the delays")


_NEW_WORKER = 0  # stands for a worker not yet created in the chain check (stored ids are > 0)


async def _ignore_change(worker_id: int) -> None:
    """Standalone: this process is the only one caching workers."""


class Workers:
    def __init__(self, repo: Repository, registry: RunnerRegistry, config: Config) -> None:
        self._repo = repo
        self._registry = registry
        self._config = config
        self._policy = RunnerPolicy.from_config(config)
        self._served_channels = {c.name for c in config.all_channels()}
        # Cached workers and when each entry expires (trio time). Writes and other processes'
        # change events drop entries at once; the expiry bounds staleness if an event is missed.
        self._by_id: dict[int, tuple[data.Worker, float]] = {}
        # Enqueue by worker_name is the common call: name -> id, so it is served by the cache
        # above instead of a database read per job (invalidated with the id's entry).
        self._id_by_name: dict[str, int] = {}
        # Bumped by every change: a read that started before a change must not cache what it
        # read after the change dropped the cache (it would stay stale for a whole TTL).
        self._generation = 0
        self._ids_by_channel: dict[str, list[int]] | None = None  # for the scheduler's polls
        self._ids_by_channel_expiry = 0.0
        # Told about every local write, so other processes can drop their cached copies (Scalable).
        self.on_changed: Callable[[int], Awaitable[None]] = _ignore_change
        # Told when a worker was deleted, so its waiting jobs end instead of waiting forever.
        self.on_deleted: Callable[[int], Awaitable[object]] = _ignore_change

    # --- validation ----------------------------------------------------------------
    async def _validate(self, wd: data.WorkerData, worker_id: int | None = None) -> None:
        if not wd.name or not wd.name.strip():
            raise InvalidArgument("name", "must not be empty")
        _check_length("name", wd.name, NAME_MAX_CHARS)
        _check_length("channel", wd.channel, CHANNEL_MAX_CHARS)
        if wd.runner_id is None or wd.runner_id.value == 0:
            raise InvalidArgument("runner_id", "is required")
        spec = self._registry.get(wd.runner_id.value)
        if spec is None or await self._repo.find_runner(wd.runner_id.value) is None:
            raise InvalidArgument("runner_id", f"runner {wd.runner_id.value} does not exist")
        try:
            spec.check_settings(wd.runner_settings)
        except ValueError as e:
            raise InvalidArgument("runner_settings", f"is not a valid {spec.settings_type}: {e}") from None
        try:
            self._policy.check_worker(spec.name, wd.runner_settings)
        except PolicyViolation as e:
            raise InvalidArgument(e.field, e.message) from None
        if int(wd.response_type) not in _RESPONSE_TYPES:
            raise InvalidArgument("response_type", f"unknown value {int(wd.response_type)}")
        if int(wd.queue_type) not in _QUEUE_TYPES:
            wd.queue_type = data.QueueType.NORMAL  # upstream coerces unknown queue types
        if wd.periodic_interval:
            if wd.response_type == data.ResponseType.DIRECT:
                raise InvalidArgument("periodic_interval", "a periodic worker cannot have response_type DIRECT")
            if wd.periodic_interval <= self._config.fetch_interval_ms:
                raise InvalidArgument(
                    "periodic_interval",
                    f"must be greater than JOB_QUEUE_FETCH_INTERVAL ({self._config.fetch_interval_ms} ms)",
                )
        if wd.queue_type == data.QueueType.FORCED_RDB and wd.response_type == data.ResponseType.DIRECT:
            raise InvalidArgument("queue_type", "FORCED_RDB cannot be combined with response_type DIRECT")
        if wd.response_type == data.ResponseType.LISTEN_AFTER and not (wd.store_success and wd.store_failure):
            raise InvalidArgument("store_success", "LISTEN_AFTER workers need store_success and store_failure")
        if wd.retry_policy is not None:
            check_retry_policy(wd.retry_policy)
        # Only a Standalone server knows every channel that will ever run jobs.
        standalone = self._config.storage_type == STANDALONE
        if standalone and wd.channel is not None and channel_of(wd) not in self._served_channels:
            served = ", ".join(sorted(self._served_channels))
            raise InvalidArgument(
                "channel",
                f"channel {wd.channel!r} is not served by this server (served: {served}; see WORKER_CHANNELS)",
            )
        check_links(worker_id, [nxt.value for nxt in wd.next_workers])

    async def _check_chains(self, worker_id: int, wd: data.WorkerData) -> None:
        """The chains through the worker, with `wd` as its definition, against every stored one
        (`next_workers.py`). Reads every worker: definitions change rarely, and a chain's cost
        is decided by workers other than this one."""
        graph = {w.id.value: [n.value for n in w.data.next_workers] for w in await self._repo.list_workers()}
        graph[worker_id] = [n.value for n in wd.next_workers]
        check_chains(graph, worker_id)

    def check_args(self, worker: data.Worker, args: bytes) -> None:
        """Refuse job args the worker's runner cannot parse, or that the runner policy forbids
        (as it may the worker itself, if it was stored before the policy was tightened), at
        Enqueue rather than as a failed job.

        A runner this process does not know (a plugin no longer installed) is left for the run to report.
        """
        spec = self._registry.get(worker.data.runner_id.value) if worker.data.runner_id is not None else None
        if spec is None:
            return
        try:
            spec.check_args(args)
        except ValueError as e:
            raise InvalidArgument("args", f"is not a valid {spec.args_type}: {e}") from None
        try:
            self._policy.check_job(spec.name, worker.data.runner_settings, args)
        except PolicyViolation as e:
            raise InvalidArgument(e.field, e.message) from None

    # --- operations ----------------------------------------------------------------
    async def create(self, wd: data.WorkerData) -> int:
        await self._validate(wd)
        await self._check_chains(_NEW_WORKER, wd)
        worker_id = await self._repo.create_worker(wd)
        try:
            # Again with the id it got: a stored worker may already name that id (ids are
            # sequential, so predictable) and this definition may close a cycle through it.
            await self._check_chains(worker_id, wd)
        except InvalidArgument:
            with trio.CancelScope(shield=True):
                await self._repo.delete_worker(worker_id)
            raise
        await self._changed(worker_id)
        return worker_id

    async def update(self, worker: data.Worker) -> bool:
        if worker.id is None or worker.id.value == 0:
            raise NotFound("id: a worker id is required")
        if worker.data is None:
            await self._changed(worker.id.value)
            return False
        if await self.get(worker.id.value) is None:
            raise NotFound(f"worker {worker.id.value} does not exist")
        await self._validate(worker.data, worker.id.value)
        await self._check_chains(worker.id.value, worker.data)
        try:
            return await self._repo.update_worker(worker.id.value, worker.data)
        finally:
            await self._changed(worker.id.value)

    async def delete(self, worker_id: int) -> bool:
        try:
            deleted = await self._repo.delete_worker(worker_id)
        finally:
            await self._changed(worker_id)
        if deleted:
            await self.on_deleted(worker_id)
        return deleted

    def forget(self, worker_id: int) -> None:
        """Drop cached views of a worker (after a local write, or another process's)."""
        self._generation += 1
        self._by_id.pop(worker_id, None)
        for name in [n for n, i in self._id_by_name.items() if i == worker_id]:
            del self._id_by_name[name]
        self._ids_by_channel = None

    async def _changed(self, worker_id: int) -> None:
        self.forget(worker_id)
        with trio.CancelScope(shield=True):
            await self.on_changed(worker_id)

    async def ids_on_channel(self, channel: str) -> list[int]:
        """Ids of the workers whose jobs run on `channel` (cached until a worker changes, at most a minute)."""
        now = trio.current_time()
        if self._ids_by_channel is None or self._ids_by_channel_expiry <= now:
            generation = self._generation
            index: dict[str, list[int]] = {}
            for worker in await self._repo.list_workers():
                index.setdefault(channel_of(cast(data.WorkerData, worker.data)), []).append(worker.id.value)
            if generation != self._generation:  # a worker changed while we read: this may be stale
                return index.get(channel, [])
            self._ids_by_channel = index
            self._ids_by_channel_expiry = now + self._config.worker_cache_ttl_s
        return self._ids_by_channel.get(channel, [])

    async def get(self, worker_id: int) -> data.Worker | None:
        """Cached lookup used on the job path (unknown ids are not cached)."""
        cached = self._by_id.get(worker_id)
        now = trio.current_time()
        if cached is not None and cached[1] > now:
            return cached[0]
        generation = self._generation
        worker = await self._repo.find_worker(worker_id)
        if worker is None:
            self._by_id.pop(worker_id, None)
        elif generation == self._generation:  # else a change landed while we read: do not cache it
            self._by_id[worker_id] = (worker, now + self._config.worker_cache_ttl_s)
        return worker

    async def find_by_name(self, name: str) -> data.Worker | None:
        """Cached like `get`: a name seen before resolves through its id's cache entry (checked
        to still carry that name, so a rename that slipped past invalidation reads again)."""
        worker_id = self._id_by_name.get(name)
        if worker_id is not None:
            cached = self._by_id.get(worker_id)
            if cached is not None and cached[1] > trio.current_time() and cached[0].data is not None \
                    and cached[0].data.name == name:
                return cached[0]
        generation = self._generation
        worker = await self._repo.find_worker_by_name(name)
        if worker is None or worker.id is None:
            self._id_by_name.pop(name, None)
        elif generation == self._generation:
            if len(self._id_by_name) >= NAME_CACHE_MAX:  # names clients made up must not grow it forever
                self._id_by_name.clear()
            self._id_by_name[name] = worker.id.value
            self._by_id[worker.id.value] = (worker, trio.current_time() + self._config.worker_cache_ttl_s)
        return worker

    async def list(self, limit: int | None, offset: int | None) -> list[data.Worker]:
        return await self._repo.list_workers(*page(limit, offset))

    async def count(self) -> int:
        return await self._repo.count_workers()

    async def resolve(
        self, worker_id: data.WorkerId | None, worker_name: str | None, field_prefix: str = ""
    ) -> data.Worker:
        """The worker named by a request's `worker` oneof; INVALID_ARGUMENT when missing or unknown."""
        if worker_id is not None:
            worker = await self.get(worker_id.value)
            if worker is None:
                raise InvalidArgument(f"{field_prefix}worker_id", f"worker {worker_id.value} does not exist")
            return worker
        if worker_name is not None:
            if not worker_name:
                raise InvalidArgument(f"{field_prefix}worker_name", "must not be empty")
            worker = await self.find_by_name(worker_name)
            if worker is None:
                raise InvalidArgument(f"{field_prefix}worker_name", f"worker {worker_name!r} does not exist")
            return worker
        raise InvalidArgument(f"{field_prefix}worker", "one of worker_id or worker_name is required")
