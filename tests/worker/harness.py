"""The worker side (channels, scheduler, executor) on in-memory storage, without the gRPC front
and with a stub runner pool, so scheduling runs in trio's virtual time (MockClock): nothing
here leaves the event loop, so an autojumping clock cannot race ahead of real work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from jobworkerp.app import App, serve_workers
from jobworkerp.clock import now_ms
from jobworkerp.config import load_config
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.runners.base import OtherError, RetryableError
from jobworkerp.storage import memory_storage
from jobworkerp.storage.memory_rdb import MemoryRepository


@dataclass
class Call:
    at_ms: int
    worker_id: int
    args: bytes


@dataclass
class StubPool:
    """Runs jobs in-process by what their args say: `fail`, `sleep:SECONDS`, `babble:BYTES` (an
    OtherError with a message that long), anything else echoes `args+`."""

    calls: list[Call] = field(default_factory=list)

    async def run(self, fn: Any, ref: str, settings: bytes, args: bytes, worker_id: int, use_static: bool,
                  on_emit: Any = None) -> list:
        self.calls.append(Call(now_ms(), worker_id, args))
        text = args.decode()
        if text == "fail":
            raise RetryableError("failed on purpose")
        if text.startswith("babble:"):
            raise OtherError("e" * int(text.removeprefix("babble:")))
        if text.startswith("sleep:"):
            await trio.sleep(float(text.removeprefix("sleep:")))
            return [b"slept"]
        return [args + b"+"]

    # GRPC_UNARY, the runner these tests use, is a concurrent one: its jobs come here.
    run_shared = run


@dataclass
class System:
    app: App
    pool: StubPool

    async def worker(self, name: str, **fields: Any) -> data.WorkerId:
        # GRPC_UNARY: its args are raw bytes, so the stub's `fail`/`sleep:N` args pass the Enqueue check.
        wd = data.WorkerData(name=name, runner_id=data.RunnerId(value=3), **fields)
        return data.WorkerId(value=await self.app.workers.create(wd))

    async def enqueue(self, worker_id: data.WorkerId, args: bytes, **fields: Any) -> int:
        job_id, _ = await self.app.jobs.enqueue(svc.JobRequest(worker_id=worker_id, args=args, **fields))
        return job_id

    async def listen(self, worker_id: data.WorkerId, job_id: int) -> data.JobResult:
        return await self.app.results.listen(
            svc.ListenRequest(job_id=data.JobId(value=job_id), worker_id=worker_id, timeout=0))


@asynccontextmanager
async def running_system(**env: str) -> AsyncIterator[System]:
    config = load_config({"JOB_QUEUE_FETCH_INTERVAL": "500",
                          "WORKER_DEFAULT_CONCURRENCY": "2", **env})
    repo = MemoryRepository()
    await repo.open()
    storage = memory_storage(repo)
    app = App(config, storage)
    await app.runners.seed()
    pool = StubPool()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_workers, app, lambda channel: pool, stop)
        yield System(app, pool)
        stop.set()
