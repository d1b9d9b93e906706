"""Fixtures of the storage conformance suite.

Every driver of :class:`jobworkerp.storage.rdb.Repository` runs the same tests: add its
name to ``DRIVERS`` and a branch to :func:`make_repository` (the MySQL driver slots in here).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from jobworkerp.storage.memory_rdb import MemoryRepository
from jobworkerp.storage.rdb import Repository
from jobworkerp.storage.sqlite import SqliteRepository

DRIVERS = ["sqlite", "memory"]
_MEMORY_STORES: dict[str, MemoryRepository] = {}


def make_repository(driver: str, tmp_path: Path) -> Repository:
    """Build an unopened driver whose data lives under ``tmp_path`` (same args → same data)."""
    if driver == "sqlite":
        return SqliteRepository(str(tmp_path / "jobworkerp.sqlite3"))
    if driver == "memory":  # "the same storage" = the same in-process instance
        return _MEMORY_STORES.setdefault(str(tmp_path), MemoryRepository())
    raise ValueError(f"unknown storage driver {driver!r}")


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def repo_factory(driver: str, tmp_path: Path) -> Callable[[], Repository]:
    """A fresh, unopened driver over the same storage as ``repo`` (for reopen tests)."""
    return lambda: make_repository(driver, tmp_path)


@pytest.fixture
async def repo(repo_factory: Callable[[], Repository]) -> AsyncIterator[Repository]:
    repository = repo_factory()
    await repository.open()
    try:
        yield repository
    finally:
        await repository.aclose()
