"""Where a new or re-submitted job goes (pure), spec §5.3 with our departures.

QUEUE: instant jobs wait in their channel's queue.
RDB: scheduled (future), periodic and FORCED_RDB jobs live only as RDB rows; the scheduler
     claims them when they are due.
RDB_AND_QUEUE: WITH_BACKUP jobs are queued and backed by a row, so they survive a restart.
"""

from __future__ import annotations

import enum

from jobworkerp.proto.jobworkerp import data


class Route(enum.Enum):
    QUEUE = "queue"
    RDB = "rdb"
    RDB_AND_QUEUE = "rdb_and_queue"


def is_future(run_after_time: int, now: int, fetch_interval_ms: int) -> bool:
    """Too far ahead to hold in a queue: the scheduler will pick it up in time."""
    return run_after_time > now + fetch_interval_ms


def route(worker: data.WorkerData, run_after_time: int, now: int, fetch_interval_ms: int) -> Route:
    if worker.response_type == data.ResponseType.DIRECT:
        return Route.QUEUE  # the caller is waiting; never parked in the RDB
    if worker.periodic_interval or is_future(run_after_time, now, fetch_interval_ms):
        return Route.RDB
    if worker.queue_type == data.QueueType.FORCED_RDB:
        return Route.RDB
    if worker.queue_type == data.QueueType.WITH_BACKUP:
        return Route.RDB_AND_QUEUE
    return Route.QUEUE


def needs_rdb_time(worker: data.WorkerData) -> bool:
    """Periodic and FORCED_RDB jobs with no time get `now`, so the scheduler sees them as due."""
    return bool(worker.periodic_interval) or worker.queue_type == data.QueueType.FORCED_RDB
