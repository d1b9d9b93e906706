"""A MariaDB restart under a steady load in Scalable mode: calls that need the database are
refused with UNAVAILABLE while it is down (never INTERNAL, never a hang), everything resumes by
itself afterwards, and no accepted job is lost or ends twice. The database is a private server
(tests/chaos/mariadb_instance.py); the ledger is the test's (tests/chaos/scenarios.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobworkerp.testing.server import run
from tests.chaos.scenarios import deployment, mariadb_restart

pytestmark = pytest.mark.timeout(400)


def test_a_mariadb_restart_loses_no_job_and_every_process_survives(tmp_path: Path) -> None:
    with deployment(tmp_path, private_mariadb=True) as d:
        t = run(mariadb_restart(d, jobs=60), timeout=380)
        for proc in d.fronts + d.workers:
            assert proc.alive(), proc.log()
    assert (t.accepted, t.lost, t.duplicated, t.completed) == (60, 0, 0, 60), t
    assert all(r.startswith("UNAVAILABLE") for r in t.refused), t.refused
