"""The client side of one measured row, run as its own process: `python -m perfkit.drive TARGET ...`.

It runs in the interpreter that has the target's library (the peers' own venv for arq), so its
imports are lazy, per target. Its own CPU time is reported with the result; the parent adds the
server's. A blocking client (dramatiq) gets one thread per caller.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

from perfkit.load import Call, drive, emit

PEER_JOBS = {"noop": "noop", "sleep": "sleep_ms"}


@asynccontextmanager
async def jobworkerp_client(port: int, job: str, sleep_ms: int) -> AsyncIterator[Call]:
    """A DIRECT worker on the `hello` (no-op) or `sleep` plugin: one Enqueue RPC per job that
    answers with the job's result."""
    from jobworkerp.proto.jobworkerp import data
    from jobworkerp.proto.jobworkerp import service as svc
    from jobworkerp.runners.plugins import proto_messages
    from jobworkerp.testing.server import connect
    from plugins import sleep

    plugin = "hello" if job == "noop" else "sleep"
    args = b"" if job == "noop" else proto_messages(sleep.ARGS_PROTO).SleepArgs(ms=sleep_ms).SerializeToString()
    async with connect(port) as c:
        runner_id = [r.id async for r in c.runner.find_list(svc.FindListRequest()) if r.data.name == plugin][0]
        worker = data.WorkerData(name=f"perf-{plugin}-{uuid.uuid4().hex[:8]}", runner_id=runner_id,
                                 response_type=data.ResponseType.DIRECT, use_static=True)
        request = svc.JobRequest(worker_id=(await c.worker.create(worker)).id, args=args)

        async def call() -> None:
            result = (await c.job.enqueue(request)).result
            if result is None or result.data.status != data.ResultStatus.SUCCESS:
                raise RuntimeError(f"job did not succeed: {result}")

        yield call


@asynccontextmanager
async def threaded(client: AbstractContextManager[Callable[[], None]], callers: int) -> AsyncIterator[Call]:
    pool = ThreadPoolExecutor(max_workers=callers)
    loop = asyncio.get_running_loop()
    with client as blocking:
        async def call() -> None:
            await loop.run_in_executor(pool, blocking)

        try:
            yield call
        finally:
            pool.shutdown(wait=True)


def open_client(args: argparse.Namespace) -> Any:
    if args.target == "jobworkerp":
        return jobworkerp_client(args.port, args.job, args.sleep_ms)
    if args.target == "echo":
        from perfkit.echo import client

        return client(args.port)
    if args.target == "arq":
        from peers.arq_tasks import client as arq_client

        return arq_client(PEER_JOBS[args.job], args.sleep_ms)
    if args.target == "dramatiq":
        from peers.dramatiq_tasks import client as dramatiq_client

        return threaded(dramatiq_client(PEER_JOBS[args.job], args.sleep_ms), args.callers)
    from peers.taskiq_tasks import client as taskiq_client

    return taskiq_client(PEER_JOBS[args.job], args.sleep_ms)


async def main_async(args: argparse.Namespace) -> None:
    async with open_client(args) as call:
        await drive(call, args.callers, args.seconds, args.warmup)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", choices=["jobworkerp", "echo", "arq", "dramatiq", "taskiq"])
    parser.add_argument("--job", choices=["noop", "sleep"], default="noop")
    parser.add_argument("--callers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sleep-ms", type=int, default=10)
    args = parser.parse_args()
    try:
        asyncio.run(main_async(args))
    except Exception as e:
        emit({"error": f"{type(e).__name__}: {e}"[:300]})


if __name__ == "__main__":
    main()
