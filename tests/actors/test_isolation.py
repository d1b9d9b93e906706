"""Hosts see only allowlisted environment variables, run in `/`, and never import from the parent's cwd."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from actors import isolation
from actors.process_pool import ProcessPool

pytestmark = [pytest.mark.trio, pytest.mark.timeout(30)]


def host_view() -> tuple[str, dict[str, str], list[str]]:
    """Runs in a host: its working directory, environment and import path."""
    return os.getcwd(), dict(os.environ), list(sys.path)


def import_planted() -> str:
    """Runs in a host: where `planted_module` comes from, if anywhere."""
    import importlib.util

    spec = importlib.util.find_spec("planted_module")
    return "" if spec is None else str(spec.origin)


async def test_a_host_gets_only_allowlisted_variables_and_explicit_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISOLATION_SECRET", "s3cret")
    monkeypatch.setenv("ISOLATION_ALLOWED", "yes")
    async with ProcessPool(1, env_allowlist=["PATH", "ISOLATION_ALLOWED"], env={"ISOLATION_EXTRA": "x"}) as pool:
        cwd, env, _ = await pool.run(host_view)
    assert cwd == "/"
    assert env.get("ISOLATION_ALLOWED") == "yes"
    assert env.get("ISOLATION_EXTRA") == "x"
    assert "ISOLATION_SECRET" not in env
    assert isolation.IMPORT_PATH_ENV not in env  # the bootstrap removed it: a call's children never see it


async def test_the_default_allowlist_drops_everything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISOLATION_SECRET", "s3cret")
    async with ProcessPool(1) as pool:
        _, env, _ = await pool.run(host_view)
    assert "ISOLATION_SECRET" not in env
    assert env.get("PATH") == os.environ["PATH"]


async def test_the_parents_working_directory_is_not_on_a_hosts_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As `python -m server` started in tmp_path would be: the directory first on the path, and the cwd.
    (tmp_path / "planted_module.py").write_text("raise SystemExit('imported from the working directory')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert str(tmp_path) not in isolation.import_path()
    async with ProcessPool(1) as pool:
        assert await pool.run(import_planted) == ""
        _, _, path = await pool.run(host_view)
    assert str(tmp_path) not in path and "" not in path


async def test_pythonpath_naming_the_working_directory_keeps_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert str(tmp_path) in isolation.import_path()
