"""kill -9 of worker and grpc-front processes under a steady load in Scalable mode: no accepted
WITH_BACKUP job is lost; a job can run twice only if it was running on a killed worker. The
ledger is kept by the test (tests/chaos/scenarios.py). `just chaos` runs the same scenarios with
more jobs and kills (bench/chaos.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobworkerp.testing.server import run
from tests.chaos.scenarios import deployment, kill_fronts, kill_workers

pytestmark = pytest.mark.timeout(400)

CONCURRENCY = 2  # per worker process (tests/scalable/services.py)


def test_killed_workers_lose_no_job(tmp_path: Path) -> None:
    kills = 3
    with deployment(tmp_path, workers=2) as d:
        t = run(kill_workers(d, jobs=90, kills=kills), timeout=380)
    assert (t.accepted, t.lost) == (90, 0), t
    assert t.completed == 90, t
    # Only jobs running on the killed process may run again.
    assert t.duplicated <= kills * CONCURRENCY, t


def test_killed_fronts_lose_no_accepted_job(tmp_path: Path) -> None:
    with deployment(tmp_path, fronts=2) as d:
        t = run(kill_fronts(d, jobs=90, kills=3), timeout=380)
    assert (t.accepted, t.lost, t.duplicated, t.completed) == (90, 0, 0, 90), t
