"""Where an accepted or re-run job waits (pure): a queue, a database row, or both.

QUEUE: instant jobs wait in their channel's queue.
RDB: scheduled (future), periodic and FORCED_RDB jobs live only as database rows; a channel's
     due-job fetcher claims them when they are due.
RDB_AND_QUEUE: WITH_BACKUP jobs are queued and backed by a row, so they survive a restart.

The queue type is decided when the job is accepted and travels with it (see `Ticket`), so a
worker update changes where jobs accepted after it go, never where an already accepted job
(or its retries) goes.
"""

from __future__ import annotations

import enum

from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.rdb import DEFAULT_CHANNEL


class Route(enum.Enum):
    QUEUE = "queue"
    RDB = "rdb"
    RDB_AND_QUEUE = "rdb_and_queue"

    @property
    def has_row(self) -> bool:
        return self is not Route.QUEUE

    @property
    def queued(self) -> bool:
        return self is not Route.RDB


def channel_of(worker: data.WorkerData) -> str:
    """The queue channel of a worker; absent means the default channel."""
    return worker.channel if worker.channel else DEFAULT_CHANNEL


def is_future(run_after_time: int, now: int, fetch_interval_ms: int) -> bool:
    """Too far ahead to hold in a queue: the due-job fetcher will pick it up in time."""
    return run_after_time > now + fetch_interval_ms


def route(worker: data.WorkerData, run_after_time: int, now: int, fetch_interval_ms: int,
          queue_type: int | None = None) -> Route:
    """Where a job of `worker` due at `run_after_time` waits; `queue_type` overrides the
    worker's own (a re-run keeps the queue type its job was accepted with)."""
    if worker.response_type == data.ResponseType.DIRECT:
        return Route.QUEUE  # the caller is waiting; never parked in the RDB
    if worker.periodic_interval or is_future(run_after_time, now, fetch_interval_ms):
        return Route.RDB
    kind = int(worker.queue_type) if queue_type is None else queue_type
    if kind == data.QueueType.FORCED_RDB:
        return Route.RDB
    if kind == data.QueueType.WITH_BACKUP:
        return Route.RDB_AND_QUEUE
    return Route.QUEUE


def needs_rdb_time(worker: data.WorkerData, queue_type: int) -> bool:
    """Periodic and FORCED_RDB jobs with no time get `now`, so the fetcher sees them as due."""
    return bool(worker.periodic_interval) or queue_type == data.QueueType.FORCED_RDB
