"""Servers in the test process, so the spans they record (their runner hosts' too) reach the
test's in-memory exporter: `run_server` itself, with real storage, real runner hosts and a real
gRPC listener, driven by a grpclib client on a thread of its own over a socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import trio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jobworkerp import tracing
from jobworkerp.app import run_server
from jobworkerp.config import load_config
from jobworkerp.testing.server import run

T = TypeVar("T")
WAIT_S = 60.0  # generous: a condition, never a duration, is what the tests wait for


@asynccontextmanager
async def serving(env: dict[str, str], mode: str = "all-in-one") -> AsyncIterator[int]:
    """`run_server` in this trio run until the block ends; its gRPC port (0 for a worker)."""
    config = load_config({"GRPC_ADDR": "127.0.0.1:0", "JOB_QUEUE_FETCH_INTERVAL": "500",
                          "WORKER_DEFAULT_CONCURRENCY": "2", **env},
                         dotenv_path=None)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(run_server, config, stop, mode))
        try:
            yield port
        finally:
            stop.set()


async def client(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an asyncio client scenario (jobworkerp.testing.server.connect) on a thread."""
    return await trio.to_thread.run_sync(lambda: run(scenario(), WAIT_S))


async def wait_for(what: str, condition: Callable[[], bool]) -> None:
    with trio.move_on_after(WAIT_S):
        while not condition():  # noqa: ASYNC110 - polls what the exporter holds; no hook in the server
            await trio.sleep(0.05)
        return
    raise AssertionError(f"not within {WAIT_S:.0f} s: {what}")


def of_job(exporter: InMemorySpanExporter, job_id: int) -> list[ReadableSpan]:
    """Finished spans that name the job (tracing.flush first: hosts' spans arrive with replies)."""
    current = tracing.current()
    assert current is not None
    current.provider.force_flush()
    return [s for s in exporter.get_finished_spans() if (s.attributes or {}).get("jobworkerp.job.id") == job_id]


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]
