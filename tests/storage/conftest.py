"""Fixtures of the storage conformance suite.

Every driver of :class:`jobworkerp.storage.rdb.Repository` runs the same tests: add its
name to ``DRIVERS`` and a branch to :func:`make_repository`.

MySQL: each test gets its own database (``jwtest_<pid>_<hash of tmp_path>``), created
before and dropped after the test, so parallel (``-n``) and repeated runs never collide;
how the server is reached is in :mod:`tests.storage.mysql_support`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from jobworkerp.storage.memory_rdb import MemoryRepository
from jobworkerp.storage.mysql_pool import MysqlParams
from jobworkerp.storage.rdb import Repository
from jobworkerp.storage.sqlite import SqliteRepository
from tests.storage.mysql_support import mysql_database_name, mysql_repository, probed_server, temporary_database

DRIVERS = ["memory", "sqlite", "mysql"]
_MEMORY_STORES: dict[str, MemoryRepository] = {}


def make_repository(driver: str, tmp_path: Path) -> Repository:
    """Build an unopened driver whose data lives under ``tmp_path`` (same args → same data).

    For MySQL the data lives in the database named after ``tmp_path``, which the ``storage``
    fixture creates (after probing the server) before this is called.
    """
    if driver == "memory":  # "the same storage" = the same in-process instance
        return _MEMORY_STORES.setdefault(str(tmp_path), MemoryRepository())
    if driver == "sqlite":
        return SqliteRepository(str(tmp_path / "jobworkerp.sqlite3"))
    if driver == "mysql":
        return mysql_repository(replace(probed_server(), database=mysql_database_name(tmp_path)))
    raise ValueError(f"unknown storage driver {driver!r}")


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def storage(driver: str, tmp_path: Path) -> AsyncIterator[None]:
    """Whatever the driver needs to exist before it opens (a MySQL database), torn down after."""
    if driver != "mysql":
        yield
        return
    async with temporary_database(tmp_path):
        yield


@pytest.fixture
async def repo_factory(driver: str, tmp_path: Path, storage: None) -> Callable[[], Repository]:
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


@pytest.fixture
async def mysql_database(tmp_path: Path) -> AsyncIterator[MysqlParams]:
    """A fresh, empty MySQL database for a MySQL-only test (settings name it)."""
    async with temporary_database(tmp_path) as params:
        yield params
