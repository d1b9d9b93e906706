"""Chaos table: faults under a steady load against a real Scalable deployment, counted by a ledger.

    python bench/chaos.py                       # every scenario, full size (kills over 2 000 jobs)
    python bench/chaos.py --jobs 300 --only kill  # scenarios whose name contains "kill", smaller
    python bench/chaos.py --no-checks           # the table only

Each scenario (tests/chaos/scenarios.py) starts a private Redis, a private MariaDB database and
its own front and worker processes, injects its fault while jobs are enqueued, waits for every
accepted job to end, and prints one row: jobs sent, completed, lost, duplicated, and the recovery
time (from the end of a fault until jobs are both accepted and completed again). The tests in tests/chaos/ run the same
scenarios smaller and assert what README's Guarantees promise.

After the table come the scenarios that are checks rather than counts — restore (4), runner host
resources (5), hostile requests (6), races across processes (8) — each its pytest module, one
line per module with its outcome; and overload (7), bench/overload.py at a quarter of its size
(health latency, peak memory, refusals).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chaos.scenarios import (  # noqa: E402
    Deployment,
    Tally,
    deployment,
    kill_fronts,
    kill_workers,
    mariadb_restart,
    redis_connections_cut,
    redis_restart,
)


@dataclass
class Scenario:
    name: str
    fronts: int
    workers: int
    run: Callable[[Deployment, int], Coroutine[Any, Any, Tally]]
    jobs: int  # full size
    private_mariadb: bool = False  # a MariaDB server of its own (the scenario restarts it)


SCENARIOS = [
    Scenario("redis restart", 1, 1, lambda d, n: redis_restart(d, jobs=n), 300),
    Scenario("redis connections cut", 1, 1, lambda d, n: redis_connections_cut(d, jobs=n, cuts=5), 300),
    Scenario("mariadb restart", 1, 1, lambda d, n: mariadb_restart(d, jobs=n), 300, private_mariadb=True),
    Scenario("kill -9 worker", 1, 2, lambda d, n: kill_workers(d, jobs=n, kills=5), 2000),
    Scenario("kill -9 grpc-front", 2, 1, lambda d, n: kill_fronts(d, jobs=n, kills=5), 2000),
]

ROOT = Path(__file__).resolve().parents[1]
CHECKS = [
    ("restore (4)", ["tests/chaos/test_restore.py"]),
    ("runner host resources (5)", ["tests/actors/test_process_pool.py", "-k",
                                   "memory or parent or garbage or closes or segfault or crashes"]),
    ("hostile requests (6)", ["tests/chaos/test_hostile_requests.py"]),
    ("races across processes (8)", ["tests/chaos/test_cross_process_races.py"]),
]

HEADER = ["scenario", "jobs sent", "completed", "lost", "duplicated", "recovery s"]


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    for r in [HEADER, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, help="jobs per scenario (default: each scenario's full size)")
    parser.add_argument("--only", default="", help="run the scenarios whose name contains this")
    parser.add_argument("--no-checks", action="store_true", help="only the table (no pytest modules, no overload)")
    args = parser.parse_args()
    rows: list[list[str]] = []
    for scenario in SCENARIOS:
        if args.only not in scenario.name:
            continue
        jobs = args.jobs or scenario.jobs
        with tempfile.TemporaryDirectory(prefix="jwchaos-") as tmp, \
                deployment(Path(tmp), fronts=scenario.fronts, workers=scenario.workers,
                           private_mariadb=scenario.private_mariadb) as d:
            tally: Tally = asyncio.run(scenario.run(d, jobs))
        rows.append(tally.row())
        refused = f"{len(tally.refused)} refused ({', '.join(sorted({r.split(':')[0] for r in tally.refused}))})" \
            if tally.refused else "none refused"
        print(f"{scenario.name}: {tally.accepted} accepted, {refused}, {tally.ambiguous} ambiguous", flush=True)
    print_table(rows)
    failed = any(int(r[3]) for r in rows)
    if not args.no_checks:
        failed |= run_checks(args.only)
    return 1 if failed else 0


def run_checks(only: str) -> bool:
    """The check scenarios (each its pytest module) and overload; True if any failed."""
    failed = False
    for name, pytest_args in CHECKS:
        if only not in name:
            continue
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args],
                              cwd=ROOT, capture_output=True, text=True)
        summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        failed |= proc.returncode != 0
        print(f"{name}: {'PASS' if proc.returncode == 0 else 'FAIL'} in {time.monotonic() - started:.0f} s "
              f"({summary})", flush=True)
    if only in "overload (7)":
        print("overload (7):", flush=True)
        proc = subprocess.run([sys.executable, "bench/overload.py", "--limit", "5000", "--clients", "50",
                               "--seconds", "20"], cwd=ROOT)
        failed |= proc.returncode != 0
    return failed


if __name__ == "__main__":
    sys.exit(main())
