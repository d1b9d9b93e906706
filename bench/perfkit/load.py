"""Closed-loop load for one measured row, and the driver's side of the start signal.

N callers each run one job after another (enqueue, wait for the result) until the time is up;
jobs/s is the number completed over the time until the last caller finished. The driver first
warms up (connections, caches, runner hosts or worker threads started), then prints `PERF ready`
and waits for a line on stdin, so the parent reads the server's CPU counters right at the start
of the measured part. Standard library only: it also runs in the peers' own interpreters.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Call = Callable[[], Awaitable[int | None]]  # how many jobs the call ran (None: one)


@dataclass
class Run:
    jobs: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    error: str | None = None
    elapsed_s: float = 0.0


async def run_callers(call: Call, callers: int, seconds: float, min_jobs: int = 0) -> Run:
    """Run `callers` loops until `seconds` have passed and at least `min_jobs` completed. A caller
    stops at its first failure (a dead worker would otherwise cost a timeout per job)."""
    run = Run()
    start = time.perf_counter()
    deadline = start + seconds

    async def caller() -> None:
        while run.error is None and (time.perf_counter() < deadline or run.jobs < min_jobs):
            began = time.perf_counter()
            try:
                ran = await call()
            except Exception as e:
                run.error = f"{type(e).__name__}: {e}"[:300]
                return
            run.latencies_ms.append((time.perf_counter() - began) * 1000)
            run.jobs += 1 if ran is None else ran

    await asyncio.gather(*(caller() for _ in range(callers)))
    run.elapsed_s = time.perf_counter() - start
    return run


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * q))] if sorted_ms else float("nan")


def emit(message: dict[str, object]) -> None:
    print("PERF " + json.dumps(message), flush=True)


async def drive(call: Call, callers: int, seconds: float, warmup_s: float) -> None:
    """Warm up, signal ready, wait for the go line, measure, print the result line."""
    warm = await run_callers(call, callers, warmup_s, min_jobs=2 * callers)
    if warm.error is not None:
        emit({"error": f"warm-up: {warm.error}"})
        return
    emit({"ready": True})
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    cpu = time.process_time()
    measured = await run_callers(call, callers, seconds)
    cpu = time.process_time() - cpu
    ordered = sorted(measured.latencies_ms)
    emit({"jobs": measured.jobs, "elapsed_s": measured.elapsed_s, "client_cpu_s": cpu, "error": measured.error,
          "p50_ms": percentile(ordered, 0.50), "p99_ms": percentile(ordered, 0.99)})
