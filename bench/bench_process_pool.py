"""No-op call throughput of actors.ProcessPool.

Usage: python bench/bench_process_pool.py [seconds-per-case]

For pool sizes 1 and 2 and 1 and 8 concurrent callers, runs no-op calls for
~2 s (after a short warm-up) and prints calls/s. The no-op lives in this file
but is taken from the module imported under its own name, so cloudpickle sends
it by reference - the way real jobs are expected to be sent.
"""

from __future__ import annotations

import os
import sys
import time

import trio

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from actors.process_pool import ProcessPool  # noqa: E402


def noop() -> None:
    """The call being measured: does nothing, returns None."""


async def measure(size: int, callers: int, seconds: float) -> tuple[float, dict[str, object]]:
    """calls/s of ``callers`` tasks each calling ``noop`` in a loop for ``seconds``."""
    import bench_process_pool as by_reference  # the same module, importable by name in the host

    fn = by_reference.noop
    async with ProcessPool(size, name=f"bench-{size}") as pool:
        async with trio.open_nursery() as nursery:  # warm-up: spawn every host
            for _ in range(size):
                nursery.start_soon(pool.run, fn)
        done = 0
        deadline = time.perf_counter() + seconds

        async def caller() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await pool.run(fn)
                done += 1

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(callers):
                nursery.start_soon(caller)
        elapsed = time.perf_counter() - started
        return done / elapsed, pool.stats


async def main(seconds: float) -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {seconds:g} s per case")
    print(f"{'hosts':>5} {'callers':>7} {'calls/s':>9}  {'µs/call':>8}")
    for size in (1, 2):
        for callers in (1, 8):
            rate, _ = await measure(size, callers, seconds)
            print(f"{size:>5} {callers:>7} {rate:>9.0f}  {1e6 / rate:>8.1f}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    trio.run(main, float(sys.argv[1]) if len(sys.argv) > 1 else 2.0)
