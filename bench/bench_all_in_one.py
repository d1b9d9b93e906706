"""Benchmark a fresh all-in-one server over real gRPC and print the numbers.

1. DIRECT round trip: one client calls Enqueue on a DIRECT COMMAND worker and waits for the
   result, one call at a time; prints p50 / p99 / mean in ms.
2. NO_RESULT throughput: C concurrent callers on one HTTP/2 connection enqueue N jobs; a
   ListenStreamByWorker subscription counts completions; prints jobs/s from the first enqueue
   to the last result.

Every job runs in a runner-host subprocess. Two no-op jobs are measured:
- `hello`: the sample Python plugin runner (plugins/hello), run inside the host — no process
  start per job; the equivalent of a no-op task in a Python job queue;
- `command`: the COMMAND runner running `true` (one fork+exec per job inside the host).

`--storage scalable` runs the same all-in-one process on Redis (127.0.0.1:6379) + MariaDB
(root@127.0.0.1:3306) in a scratch database and key prefix, removed afterwards.

Usage: python bench/bench_all_in_one.py [--direct 300] [--jobs 2000] [--callers 32] [--concurrency 2]
                                        [--runner hello|command|both] [--storage standalone|scalable]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, ServerProcess, connect

PLUGINS_DIR = Path(__file__).resolve().parent.parent / "plugins"
NOOP_ARGS = b""  # an empty CommandArgs / HelloArgs message


async def runner_for(c: Client, kind: str) -> tuple[int, bytes]:
    """(runner id, worker settings) of the no-op job of this kind."""
    if kind == "command":
        return 1, bytes(runner_pb.CommandRunnerSettings(name="true"))
    runners = [r async for r in c.runner.find_list(svc.FindListRequest())]
    return next(r.id.value for r in runners if r.data.name == "hello"), b""


async def create_worker(c: Client, name: str, kind: str, response_type: data.ResponseType) -> data.WorkerId:
    runner_id, settings = await runner_for(c, kind)
    wd = data.WorkerData(name=f"{name}-{kind}", runner_id=data.RunnerId(value=runner_id), runner_settings=settings,
                         response_type=response_type, use_static=True)
    return (await c.worker.create(wd)).id


async def bench_direct(c: Client, n: int, kind: str) -> None:
    worker_id = await create_worker(c, "bench-direct", kind, data.ResponseType.DIRECT)
    request = svc.JobRequest(worker_id=worker_id, args=NOOP_ARGS)
    for _ in range(min(50, n)):  # warm-up: runner hosts started, caches filled
        await c.job.enqueue(request)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        response = await c.job.enqueue(request)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.result.data.status == data.ResultStatus.SUCCESS, response.result
    samples.sort()
    p50 = samples[len(samples) // 2]
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(f"[{kind}] DIRECT round trip ({n} sequential calls): p50 {p50:.2f} ms  p99 {p99:.2f} ms  "
          f"mean {statistics.fmean(samples):.2f} ms")


async def bench_no_result(c: Client, n: int, callers: int, kind: str) -> None:
    worker_id = await create_worker(c, "bench-noresult", kind, data.ResponseType.NO_RESULT)
    done = asyncio.Event()
    seen = 0

    async def count_results() -> None:
        nonlocal seen
        stream = c.job_result.listen_stream_by_worker(svc.ListenStreamByWorkerRequest(worker_id=worker_id))
        async for _ in stream:
            seen += 1
            if seen == n:
                done.set()
                return

    counter = asyncio.ensure_future(count_results())
    await asyncio.sleep(0.5)  # the subscription must be in place before the first job ends
    request = svc.JobRequest(worker_id=worker_id, args=NOOP_ARGS)
    remaining = n

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await c.job.enqueue(request)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    enqueued = time.perf_counter() - start
    await asyncio.wait_for(done.wait(), 300)
    elapsed = time.perf_counter() - start
    counter.cancel()
    print(f"[{kind}] NO_RESULT throughput ({n} jobs, {callers} callers): {n / elapsed:.0f} jobs/s completed "
          f"({n / enqueued:.0f} enqueues/s)")


async def main_async(args: argparse.Namespace, port: int) -> None:
    async with connect(port) as c:
        for kind in (["hello", "command"] if args.runner == "both" else [args.runner]):
            await bench_direct(c, args.direct, kind)
            await bench_no_result(c, args.jobs, args.callers, kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--direct", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=2, help="WORKER_DEFAULT_CONCURRENCY of the server")
    parser.add_argument("--runner", choices=["hello", "command", "both"], default="both")
    parser.add_argument("--storage", choices=["standalone", "scalable"], default="standalone")
    run_against_server(parser.parse_args(), main_async)


def run_against_server(args: argparse.Namespace,
                       body: Callable[[argparse.Namespace, int], Coroutine[Any, Any, None]]) -> None:
    """Start a server as `args.storage` / `args.concurrency` say, run `body(args, port)`, stop it."""
    with tempfile.TemporaryDirectory() as tmp, scratch_storage(args.storage) as storage_env:
        server = ServerProcess(Path(tmp), {"WORKER_DEFAULT_CONCURRENCY": str(args.concurrency),
                                           "PLUGINS_RUNNER_DIR": str(PLUGINS_DIR), "LOG_LEVEL": "WARN",
                                           **storage_env}).start()
        try:
            print(f"storage: {args.storage}, channel concurrency {args.concurrency}")
            asyncio.run(body(args, server.port))
        finally:
            server.stop()


@contextmanager
def scratch_storage(kind: str) -> Iterator[dict[str, str]]:
    """Env for the server; for Scalable a throwaway MariaDB database and Redis key prefix."""
    if kind == "standalone":
        yield {}
        return
    name = f"jwbench_{uuid.uuid4().hex[:8]}"
    mysql = ["mysql", "-uroot", "-h127.0.0.1"]
    subprocess.run([*mysql, "-e", f"CREATE DATABASE {name} CHARACTER SET utf8mb4"], check=True)
    try:
        yield {"STORAGE_TYPE": "Scalable", "MYSQL_DBNAME": name, "REDIS_KEY_PREFIX": f"{name}:"}
    finally:
        subprocess.run([*mysql, "-e", f"DROP DATABASE {name}"], check=True)
        client = redis.Redis.from_url("redis://127.0.0.1:6379")
        keys = client.keys(f"{name}:*")
        if keys:
            client.delete(*keys)
        client.close()


if __name__ == "__main__":
    main()
