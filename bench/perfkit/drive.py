"""The client side of one measured row, run as its own process: `python -m perfkit.drive TARGET ...`.

It runs in the interpreter that has the target's library (the peers' own venv for arq), so its
imports are lazy, per target. Its own CPU time is reported with the result; the parent adds the
server's. A blocking client (dramatiq) gets one thread per caller.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

from perfkit.load import Call, drive, emit

PEER_JOBS = {"noop": "noop", "sleep": "sleep_ms"}
STREAMS_PER_CONNECTION = 100  # the server's default GRPC_MAX_CONCURRENT_STREAMS
PROBE_WAIT_S = 1.0  # how long a probe job's result may take before the stream is asked again


@asynccontextmanager
async def jobworkerp_client(port: int, job: str, sleep_ms: int, callers: int) -> AsyncIterator[Call]:
    """A DIRECT worker on the `hello` (no-op) or `sleep` plugin: one Enqueue RPC per job that
    answers with the job's result. Calls go over as many connections as it takes to have every
    caller's call open at once (the server's GRPC_MAX_CONCURRENT_STREAMS, 100, per connection),
    taken in turn."""
    from jobworkerp.proto.jobworkerp import data
    from jobworkerp.proto.jobworkerp import service as svc
    from jobworkerp.runners.plugins import proto_messages
    from jobworkerp.testing.server import connect
    from plugins import sleep

    plugin = "hello" if job == "noop" else "sleep"
    args = b"" if job == "noop" else proto_messages(sleep.ARGS_PROTO).SleepArgs(ms=sleep_ms).SerializeToString()
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(port))
                   for _ in range(max(1, math.ceil(callers / STREAMS_PER_CONNECTION)))]
        c = clients[0]
        runner_id = [r.id async for r in c.runner.find_list(svc.FindListRequest()) if r.data.name == plugin][0]
        worker = data.WorkerData(name=f"perf-{plugin}-{uuid.uuid4().hex[:8]}", runner_id=runner_id,
                                 response_type=data.ResponseType.DIRECT, use_static=True)
        request = svc.JobRequest(worker_id=(await c.worker.create(worker)).id, args=args)
        turns = itertools.cycle(clients)

        async def call() -> None:
            result = (await next(turns).job.enqueue(request)).result
            if result is None or result.data.status != data.ResultStatus.SUCCESS:
                raise RuntimeError(f"job did not succeed: {result}")

        yield call


@asynccontextmanager
async def jobworkerp_bulk_client(port: int, batch: int) -> AsyncIterator[Call]:
    """No-op `hello` jobs enqueued `batch` at a time (BulkJobService.EnqueueBatch) to a LISTEN_AFTER
    worker; a call returns once every job of its batch has its result on the one
    ListenStreamByWorker stream the client holds. It counts `batch` jobs."""
    from jobworkerp.proto.jobworkerp import data, ext
    from jobworkerp.proto.jobworkerp import service as svc
    from jobworkerp.testing.server import connect

    loop = asyncio.get_running_loop()
    waiting: dict[int, asyncio.Future[None]] = {}
    arrived: set[int] = set()  # results that came before EnqueueBatch answered with their ids

    async with connect(port) as c:
        runner_id = [r.id async for r in c.runner.find_list(svc.FindListRequest()) if r.data.name == "hello"][0]
        worker = data.WorkerData(name=f"perf-bulk-{uuid.uuid4().hex[:8]}", runner_id=runner_id,
                                 response_type=data.ResponseType.LISTEN_AFTER, use_static=True,
                                 store_success=True, store_failure=True)
        worker_id = (await c.worker.create(worker)).id
        request = svc.JobRequest(worker_id=worker_id, args=b"")

        async def read_results() -> None:
            stream = c.job_result.listen_stream_by_worker(svc.ListenStreamByWorkerRequest(worker_id=worker_id))
            async for result in stream:
                if result.data.status != data.ResultStatus.SUCCESS:
                    raise RuntimeError(f"job did not succeed: {result}")
                job_id = result.data.job_id.value
                future = waiting.pop(job_id, None)
                if future is None:
                    arrived.add(job_id)
                elif not future.done():
                    future.set_result(None)
            raise RuntimeError("the result stream ended")

        def wait_for(job_ids: list[int]) -> list[asyncio.Future[None]]:
            futures = []
            for job_id in job_ids:
                if job_id in arrived:
                    arrived.discard(job_id)
                else:
                    futures.append(waiting.setdefault(job_id, loop.create_future()))
            return futures

        reader = asyncio.ensure_future(read_results())
        try:
            # The stream is live once a job enqueued after it opened shows up on it.
            while True:
                probe = (await c.job.enqueue(request)).id.value
                try:
                    await asyncio.wait_for(asyncio.gather(*wait_for([probe])), PROBE_WAIT_S)
                    break
                except TimeoutError:
                    waiting.pop(probe, None)
                    if reader.done():
                        reader.result()

            async def call() -> int:
                answer = await c.bulk.enqueue_batch(ext.EnqueueBatchRequest(items=[request] * batch))
                if answer.failed:
                    raise RuntimeError(f"{answer.failed} of {batch} jobs refused: {answer.results}")
                pending = wait_for([item.id.value for item in answer.results if item.id is not None])
                if pending:  # the batch's results, or the reader's failure, whichever comes first
                    await asyncio.wait([reader, asyncio.gather(*pending)], return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    reader.result()
                return batch

            yield call
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)  # its end is not news here


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
    if args.target == "jobworkerp" and args.job == "bulk":
        return jobworkerp_bulk_client(args.port, args.batch)
    if args.target == "jobworkerp":
        return jobworkerp_client(args.port, args.job, args.sleep_ms, args.callers)
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
    parser.add_argument("--job", choices=["noop", "sleep", "bulk"], default="noop",
                        help="bulk: no-op jobs, --batch at a time (this server only)")
    parser.add_argument("--batch", type=int, default=200, help="jobs per EnqueueBatch call (--job bulk)")
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
