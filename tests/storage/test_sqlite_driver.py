"""SQLite-only checks: the on-disk layout other tools (and the MySQL twin) rely on."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobworkerp.errors import InvalidArgument
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.rdb import DEFAULT_CHANNEL
from jobworkerp.storage.sqlite import SqliteRepository

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "raw.sqlite3"


@pytest.fixture
async def sqlite_repo(db_path: Path) -> AsyncIterator[SqliteRepository]:
    repository = SqliteRepository(str(db_path))
    await repository.open()
    try:
        yield repository
    finally:
        await repository.aclose()


def raw(db_path: Path, sql: str) -> list[tuple]:
    """Read the file through a separate connection, as an operator's tool would."""
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


async def test_file_is_in_wal_mode_with_upstream_tables(sqlite_repo: SqliteRepository, db_path: Path) -> None:
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]
    tables = {name for (name,) in raw(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runner", "worker", "job", "job_result"} <= tables
    indexes = {name for (name,) in raw(db_path, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"job_uniq_key", "job_worker_id", "job_due", "job_result_job_id_end_time"} <= indexes


async def test_seed_rows(sqlite_repo: SqliteRepository, db_path: Path) -> None:
    assert raw(db_path, "SELECT id, name, file_name, runner_type FROM runner ORDER BY id") == [
        (1, "COMMAND", "builtin1", 1),
        (2, "HTTP_REQUEST", "builtin2", 2),
        (3, "GRPC_UNARY", "builtin3", 3),
        (4, "DOCKER", "builtin4", 4),
    ]


async def test_worker_columns_use_upstream_encodings(sqlite_repo: SqliteRepository, db_path: Path) -> None:
    plain = await sqlite_repo.create_worker(data.WorkerData(name="plain", runner_id=data.RunnerId(value=1)))
    chained = await sqlite_repo.create_worker(
        data.WorkerData(
            name="chained",
            runner_id=data.RunnerId(value=1),
            channel="gpu",
            next_workers=[data.WorkerId(value=3), data.WorkerId(value=12)],
        )
    )
    rows = raw(
        db_path,
        "SELECT id, channel, next_workers, retry_type, interval, max_interval, max_retry, basis "
        "FROM worker ORDER BY id",
    )
    assert rows == [
        (plain, DEFAULT_CHANNEL, "", 0, 0, 0, 0, 2.0),
        (chained, "gpu", "3,12", 0, 0, 0, 0, 2.0),
    ]


async def test_job_lease_and_timeout_columns(sqlite_repo: SqliteRepository, db_path: Path) -> None:
    job = data.Job(
        id=data.JobId(value=1),
        data=data.JobData(worker_id=data.WorkerId(value=1), grabbed_until_time=None, timeout=(1 << 64) - 1),
    )
    await sqlite_repo.create_job(job)
    assert raw(db_path, "SELECT grabbed_until_time, timeout, uniq_key FROM job") == [(0, -1, None)]


async def test_jobs_and_results_need_their_ids(sqlite_repo: SqliteRepository) -> None:
    with pytest.raises(InvalidArgument, match="job.id"):
        await sqlite_repo.create_job(data.Job(data=data.JobData()))
    with pytest.raises(InvalidArgument, match="job_result.id"):
        await sqlite_repo.add_results([data.JobResult(data=data.JobResultData())])


async def test_in_memory_database_works() -> None:
    repository = SqliteRepository(":memory:")
    await repository.open()
    try:
        assert await repository.count_runners() == 4
        worker_id = await repository.create_worker(data.WorkerData(name="m", runner_id=data.RunnerId(value=1)))
        assert (await repository.find_worker(worker_id)).data.name == "m"
    finally:
        await repository.aclose()


async def test_schema_steps_are_recorded_once(tmp_path) -> None:
    import sqlite3

    from jobworkerp.storage.schema_sqlite import MIGRATIONS
    from jobworkerp.storage.sqlite import SqliteRepository

    path = str(tmp_path / "migrated.sqlite3")
    for _ in range(2):  # a second open applies nothing again
        repo = SqliteRepository(path)
        await repo.open()
        await repo.aclose()
    conn = sqlite3.connect(path)
    versions = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    conn.close()
    assert versions == [m.version for m in MIGRATIONS]
