"""Enqueue throughput: BulkJobService.EnqueueBatch against one JobService.Enqueue per job.

A fresh all-in-one server gets N no-op `hello` plugin jobs (NO_RESULT worker) three ways, on one
HTTP/2 connection. Two times are measured: until every job id is back, and until every job has
run (no job status left, polled every 0.2 s, so that one is up to 0.2 s long):
- `single`: one Enqueue per job, one call at a time;
- `single xC`: one Enqueue per job, C calls in flight;
- `batch B`: EnqueueBatch calls of B jobs, one at a time.
Each phase waits for the server to drain its jobs, so the next starts idle.

Usage: python bench/bench_bulk.py [--jobs 10000] [--batch 500] [--callers 32] [--storage standalone|scalable]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

from bench_all_in_one import create_worker, run_against_server

from jobworkerp.proto.jobworkerp import data, ext
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, connect


async def drained(c: Client) -> None:
    """Poll until no job has a status (the server has no event to wait on for this)."""
    while True:
        if not [s async for s in c.job_status.find_all(data.Empty())]:
            return
        await asyncio.sleep(0.2)


async def phase(c: Client, name: str, n: int, enqueue: Callable[[], Awaitable[int]]) -> None:
    start = time.perf_counter()
    accepted = await enqueue()
    elapsed = time.perf_counter() - start
    assert accepted == n, f"{name}: {accepted} of {n} accepted"
    await drained(c)
    ran = time.perf_counter() - start
    print(f"{name:>14}: {n} jobs enqueued in {elapsed:6.2f} s = {n / elapsed:8.0f} jobs/s; "
          f"all run after {ran:6.2f} s = {n / ran:8.0f} jobs/s")


async def main_async(args: argparse.Namespace, port: int) -> None:
    async with connect(port) as c:
        worker_id = await create_worker(c, "bulk", "hello", data.ResponseType.NO_RESULT)
        job = svc.JobRequest(worker_id=worker_id, args=b"")

        async def single() -> int:
            for _ in range(args.jobs):
                await c.job.enqueue(job)
            return args.jobs

        async def concurrent() -> int:
            per_caller = args.jobs // args.callers

            async def caller() -> None:
                for _ in range(per_caller):
                    await c.job.enqueue(job)

            await asyncio.gather(*(caller() for _ in range(args.callers)))
            return per_caller * args.callers

        async def batches() -> int:
            accepted = 0
            for start in range(0, args.jobs, args.batch):
                items = [job] * min(args.batch, args.jobs - start)
                accepted += (await c.bulk.enqueue_batch(ext.EnqueueBatchRequest(items=items))).accepted
            return accepted

        await phase(c, "single", args.jobs, single)
        await phase(c, f"single x{args.callers}", args.jobs // args.callers * args.callers, concurrent)
        await phase(c, f"batch {args.batch}", args.jobs, batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=2, help="WORKER_DEFAULT_CONCURRENCY of the server")
    parser.add_argument("--storage", choices=["standalone", "scalable"], default="standalone")
    run_against_server(parser.parse_args(), main_async)


if __name__ == "__main__":
    main()
