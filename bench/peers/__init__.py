"""Task modules of the Python job queues the benchmark compares against (arq, dramatiq, taskiq).

Each module holds what a user of that library writes: the tasks (a no-op and an async 10 ms
sleep), the worker's configuration, and `client(job, poll_s)`: how a caller enqueues one job and
waits for its result with the library's own per-job API. Workers are started from these modules by
the library's own command line (`arq peers.arq_tasks.WorkerSettings`, ...), with `bench/` on
PYTHONPATH. The settings come from the environment because those command lines take none of ours.
"""

from __future__ import annotations

import os

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379


def redis_db() -> int:
    """The Redis database the peers share (the bench flushes only this one, before and after)."""
    return int(os.environ.get("BENCH_REDIS_DB", "13"))


def redis_url() -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db()}"


def concurrency() -> int:
    """How many jobs the worker runs at once (the row decides: 50 no-op, 100 sleep)."""
    return int(os.environ.get("BENCH_CONCURRENCY", "50"))


def poll_seconds() -> float:
    """Poll interval for libraries that poll (arq's worker and results, taskiq's results): their
    defaults (0.5 s, 0.2 s) would cap a single caller at a few jobs per second."""
    return float(os.environ.get("BENCH_POLL_MS", "5")) / 1000
