"""Redis going away under a steady load in Scalable mode — restarted, or every connection cut —
loses no WITH_BACKUP job, and every process reconnects by itself. The ledger that decides lost and
duplicated is kept by the test (tests/chaos/scenarios.py), not by the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobworkerp.testing.server import run
from tests.chaos.scenarios import Deployment, deployment, redis_connections_cut, redis_restart

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Deployment]:
    with deployment(tmp_path) as d:
        yield d


def _all_alive(d: Deployment) -> None:
    for proc in d.fronts + d.workers:
        assert proc.alive(), proc.log()


def test_a_redis_restart_loses_no_backed_up_job_and_every_process_survives(cluster: Deployment) -> None:
    t = run(redis_restart(cluster, jobs=60), timeout=280)
    _all_alive(cluster)
    assert (t.accepted, t.lost, t.duplicated, t.completed) == (60, 0, 0, 60), t
    # The outage was real, and the front said so the way a client can act on: UNAVAILABLE.
    assert t.refused and all(r.startswith("UNAVAILABLE") for r in t.refused), t.refused


def test_cut_redis_connections_lose_no_job_and_running_jobs_report(cluster: Deployment) -> None:
    t = run(redis_connections_cut(cluster, jobs=60, cuts=3), timeout=280)
    _all_alive(cluster)
    assert (t.accepted, t.lost, t.duplicated, t.completed) == (60, 0, 0, 60), t
    assert all(r.startswith("UNAVAILABLE") for r in t.refused), t.refused
