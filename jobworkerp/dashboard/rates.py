"""Jobs finished per second and the failure rate, per channel, for the overview's live charts.

The public API reports finished jobs as they happen only through ListenStreamByWorker, so this
follows the stream of every worker (at most MAX_FOLLOWED; DIRECT workers have no stream: their
jobs are not counted) and counts results in BUCKET_S buckets over the last WINDOW_S. The streams
are opened only while someone looks: the first overview starts them, and they are closed once
no overview has asked for IDLE_S, so an unwatched dashboard costs the server nothing. The
charts therefore start at the moment following began (`since_ms`).

A failure is any final status but SUCCESS and CANCELLED (a deleted job is not a failure).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import trio

from jobworkerp.dashboard import queries
from jobworkerp.dashboard.api import Api
from jobworkerp.dashboard.inflight import channel_of
from jobworkerp.proto.jobworkerp import data

log = logging.getLogger(__name__)

BUCKET_S = 5
WINDOW_S = 600
IDLE_S = 120.0
SYNC_S = 10.0  # how often the list of workers is read again
RETRY_S = 5.0
MAX_FOLLOWED = 200
_NOT_FAILED = (data.ResultStatus.SUCCESS, data.ResultStatus.CANCELLED)


@dataclass
class _Bucket:
    start_s: int
    finished: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)


class ResultRates:
    def __init__(self, api: Api) -> None:
        self._api = api
        self._buckets: deque[_Bucket] = deque(maxlen=WINDOW_S // BUCKET_S)
        self._channels: dict[int, str] = {}
        self._wanted = trio.Event()
        self._last_viewed = 0.0
        self.since_ms: int | None = None
        self.followed = 0
        self.skipped = 0  # workers beyond MAX_FOLLOWED

    def viewed(self) -> None:
        """An overview asked: follow the streams (again) if they were closed."""
        self._last_viewed = trio.current_time()
        self._wanted.set()

    def _record(self, worker_id: int, result: data.JobResult) -> None:
        now_s = int(time.time())
        start = now_s - now_s % BUCKET_S
        if not self._buckets or self._buckets[-1].start_s != start:
            self._buckets.append(_Bucket(start))
        bucket = self._buckets[-1]
        channel = self._channels.get(worker_id, "?")
        bucket.finished[channel] = bucket.finished.get(channel, 0) + 1
        if result.data is not None and result.data.status not in _NOT_FAILED:
            bucket.failed[channel] = bucket.failed.get(channel, 0) + 1

    def series(self) -> dict[str, Any]:
        """Per channel: finished per second and failure rate (0..1, None without jobs) per bucket."""
        now_s = int(time.time())
        last = now_s - now_s % BUCKET_S - BUCKET_S  # the newest complete bucket
        starts = [last - i * BUCKET_S for i in range(WINDOW_S // BUCKET_S - 1, -1, -1)]
        by_start = {b.start_s: b for b in self._buckets}
        channels = sorted({c for b in self._buckets for c in b.finished})
        out: dict[str, Any] = {"bucket_s": BUCKET_S, "starts": starts, "since_ms": self.since_ms,
                               "followed": self.followed, "skipped": self.skipped, "channels": {}}
        for channel in channels:
            rate, failure = [], []
            for start in starts:
                bucket = by_start.get(start)
                finished = bucket.finished.get(channel, 0) if bucket else 0
                failed = bucket.failed.get(channel, 0) if bucket else 0
                rate.append(round(finished / BUCKET_S, 2))
                failure.append(round(failed / finished, 3) if finished else None)
            out["channels"][channel] = {"finished_per_s": rate, "failure_rate": failure}
        return out

    async def run(self) -> None:
        """Follow streams while viewed; idle otherwise. Runs for the dashboard's life."""
        while True:
            await self._wanted.wait()
            self.since_ms = int(time.time() * 1000)
            self._buckets.clear()
            async with trio.open_nursery() as nursery:
                await self._follow_while_viewed(nursery)
                nursery.cancel_scope.cancel()
            self._wanted = trio.Event()
            self.since_ms = None
            self.followed = 0

    async def _follow_while_viewed(self, nursery: trio.Nursery) -> None:
        scopes: dict[int, trio.CancelScope] = {}
        while trio.current_time() - self._last_viewed < IDLE_S:
            try:
                workers = await self._api.run(queries.all_workers)
            except Exception as e:  # the front restarting, a network error: try again at the next sync
                log.info("dashboard: cannot list workers for the live charts: %s", e)
                workers = None
            if workers is not None:
                streamed = [w for w in workers if w.data.response_type != data.ResponseType.DIRECT]
                self.skipped = max(0, len(streamed) - MAX_FOLLOWED)
                wanted = {w.id.value: w for w in streamed[:MAX_FOLLOWED]}
                self._channels = {worker_id: channel_of(w) for worker_id, w in wanted.items()}
                for worker_id in list(scopes):
                    if worker_id not in wanted:
                        scopes.pop(worker_id).cancel()
                for worker_id in wanted:
                    if worker_id not in scopes:
                        scopes[worker_id] = trio.CancelScope()
                        nursery.start_soon(self._follow, worker_id, scopes[worker_id])
                self.followed = len(scopes)
            await trio.sleep(SYNC_S)

    async def _follow(self, worker_id: int, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                try:
                    await self._api.run(queries.follow_worker, worker_id,
                                        lambda result, _: self._record(worker_id, result), False)
                except Exception as e:  # the stream ended (worker deleted, fell behind, front gone)
                    log.debug("dashboard: the result stream of worker %d ended: %s", worker_id, e)
                await trio.sleep(RETRY_S)
