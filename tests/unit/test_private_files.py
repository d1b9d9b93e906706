"""Files the server creates that may hold secrets (job arguments and results, log lines) are
readable by their owner only, whatever the umask."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
import trio

from jobworkerp.cli.logs import PrivateFileHandler
from jobworkerp.storage.sqlite import SqliteRepository

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def open_umask() -> object:
    old = os.umask(0o022)  # the usual umask: what a plain open() would make world-readable
    yield
    os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_database_and_its_wal_are_private(tmp_path: Path, open_umask: object) -> None:
    path = tmp_path / "jobworkerp.sqlite3"

    async def open_and_write() -> None:
        repo = SqliteRepository(str(path))
        await repo.open()
        try:
            assert await repo.count_runners() >= 1
        finally:
            await repo.aclose()

    trio.run(open_and_write)
    assert mode_of(path) == 0o600
    for sidecar in tmp_path.glob("jobworkerp.sqlite3-*"):  # -wal / -shm, if still there
        assert mode_of(sidecar) == 0o600, sidecar


def test_a_new_log_file_is_private(tmp_path: Path, open_umask: object) -> None:
    path = tmp_path / "jobworkerp-all-in-one.log"
    handler = PrivateFileHandler(str(path))
    try:
        handler.emit(logging.LogRecord("t", logging.INFO, __file__, 1, "hello", None, None))
    finally:
        handler.close()
    assert mode_of(path) == 0o600
    assert "hello" in path.read_text()
