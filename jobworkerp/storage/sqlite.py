"""SQLite driver of :class:`jobworkerp.storage.rdb.Repository` (Standalone mode).

Threading model: ``trio.to_thread.run_sync`` does not pin a thread, so the
single ``sqlite3`` connection is opened with ``check_same_thread=False`` and every call is
serialised through a ``CapacityLimiter(1)``. That makes the connection safe to share and
keeps the trio loop free. The thread hop costs far more than a single statement, so each
public method does all its SQL in exactly one hop (a batch of results is one transaction).

Mapping rules that are not obvious from the schema:
- absent ``WorkerData.channel`` is stored as :data:`DEFAULT_CHANNEL` and read back as None;
- absent ``retry_policy`` is stored (and read back) as RetryPolicy{NONE, 0, 0, 0, 2.0};
- absent id messages (runner_id, worker_id, job_id) are stored as 0 and read back as id 0,
  mirroring upstream's NOT NULL columns;
- ``grabbed_until_time`` None is stored as 0 ("not grabbed") and read back as 0;
- uint64 ``timeout`` is stored bit-for-bit as a signed 64-bit integer, because SQLite
  INTEGER is signed and upstream's truncation to i32 loses long timeouts.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import sqlite_utils
import trio

from jobworkerp.errors import AlreadyExists, StorageClosed, Unavailable
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.migrations import pending
from jobworkerp.storage.rows import (
    TimeoutCodec,
    job_from_row,
    job_params,
    result_from_row,
    result_params,
    runner_from_row,
    worker_from_row,
    worker_params,
)
from jobworkerp.storage.schema_sqlite import (
    JOB_COLUMNS,
    JOB_RESULT_COLUMNS,
    MIGRATIONS,
    RUNNER_COLUMNS,
    SEED_RUNNERS,
    WORKER_COLUMNS,
)

T = TypeVar("T")
Row = tuple[Any, ...]

_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


def _cols(columns: Sequence[str]) -> str:
    return ", ".join(columns)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


_RUNNER_SELECT = f"SELECT {_cols(RUNNER_COLUMNS)} FROM runner"
_WORKER_SELECT = f"SELECT {_cols(WORKER_COLUMNS)} FROM worker"
_JOB_SELECT = f"SELECT {_cols(JOB_COLUMNS)} FROM job"
_RESULT_SELECT = f"SELECT {_cols(JOB_RESULT_COLUMNS)} FROM job_result"


# --- small value conversions ----------------------------------------------------------
def _u64_to_i64(value: int) -> int:
    """Reinterpret a uint64 as the signed value SQLite can store without losing bits."""
    return value - _U64 if value > _I64_MAX else value


def _i64_to_u64(value: int) -> int:
    return value + _U64 if value < 0 else value




def _page(limit: int | None, offset: int | None) -> tuple[int, int]:
    """LIMIT/OFFSET parameters: None or negative limit means "all" (SQLite LIMIT -1)."""
    lim = -1 if limit is None or limit < 0 else limit
    off = 0 if offset is None or offset < 0 else offset
    return lim, off


def _unique_key(err: sqlite3.IntegrityError) -> str | None:
    """The ``table.column`` named by a unique/primary-key violation, else None."""
    prefix = "UNIQUE constraint failed: "
    msg = str(err)
    if not msg.startswith(prefix):
        return None
    return msg[len(prefix) :].split(",")[0].strip()


@contextmanager
def _unique_as_already_exists(describe: Callable[[str], str]) -> Iterator[None]:
    """Turn a unique violation into AlreadyExists; ``describe`` names the key for the user."""
    try:
        yield
    except sqlite3.IntegrityError as err:
        key = _unique_key(err)
        if key is None:
            raise
        raise AlreadyExists(describe(key)) from err


# --- runners --------------------------------------------------------------------------


# --- workers --------------------------------------------------------------------------






def _worker_name_taken(name: str) -> Callable[[str], str]:
    return lambda _key: f"worker name '{name}' already exists"


# --- jobs -----------------------------------------------------------------------------




def _job_key_taken(job: data.Job) -> Callable[[str], str]:
    def describe(key: str) -> str:
        if key.endswith(".uniq_key"):
            return f"job uniq_key '{job.data.uniq_key}' already exists"
        return f"job id {job.id.value} already exists"

    return describe


# --- job results ----------------------------------------------------------------------




def _taken_result_id(db: sqlite_utils.Database, rows: Sequence[Row]) -> int | None:
    """Which result id of a failed batch clashed: repeated inside the batch or already stored."""
    seen: set[int] = set()
    for row in rows:
        rid = row[0]
        if rid in seen or db.execute("SELECT 1 FROM job_result WHERE id = ?", (rid,)).fetchone():
            return rid
        seen.add(rid)
    return None


# --- connection -----------------------------------------------------------------------
def _migrate(db: sqlite_utils.Database) -> None:
    """Apply the schema steps this file has not seen yet, each in its own transaction."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL)")
    applied = {row[0] for row in db.execute("SELECT version FROM schema_version").fetchall()}
    for step in pending(MIGRATIONS, applied):
        with db.atomic():
            for statement in step.statements:
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version, description) VALUES (?, ?)",
                       [step.version, step.description])


PRIVATE_FILE_MODE = 0o600  # jobs' arguments and results may hold secrets


def _create_private(path: str) -> None:
    """Create the database file readable by its owner only, if it does not exist yet.

    SQLite would create it with the umask's mode (usually world-readable); its -wal and -shm
    files take the database file's mode, so they are private too. An existing file keeps the
    mode its operator gave it."""
    if path in ("", ":memory:"):
        return
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE))
    except OSError:
        pass  # no such directory, no permission: sqlite3.connect says so in its own words


def _connect(path: str) -> sqlite_utils.Database:
    """Open the shared connection, switch to WAL and create the schema and seeds."""
    _create_private(path)
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        db = sqlite_utils.Database(conn, execute_plugins=False)
        db.enable_wal()
        db.execute("PRAGMA synchronous=NORMAL")
        _migrate(db)
        with db.atomic():
            db.conn.executemany(
                f"INSERT OR IGNORE INTO runner ({_cols(RUNNER_COLUMNS)}) VALUES ({_marks(4)})",
                SEED_RUNNERS,
            )
    except BaseException:
        conn.close()
        raise
    return db


_TIMEOUT = TimeoutCodec(to_db=_u64_to_i64, from_db=_i64_to_u64)


class SqliteRepository:
    """Repository over one SQLite file, safe to share between trio tasks."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._db: sqlite_utils.Database | None = None
        self._limiter = trio.CapacityLimiter(1)

    async def _run(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run ``fn`` on the connection in a worker thread, one call at a time.

        The open-check happens inside the hop so it is ordered with ``aclose`` by the limiter.
        Unique violations are mapped by ``fn`` itself (it knows the key's name); any other
        sqlite failure becomes Unavailable.
        """

        def call() -> T:
            db = self._db
            if db is None:
                raise StorageClosed(f"sqlite repository {self._path!r} is not open")
            try:
                return fn(db)
            except sqlite3.Error as err:
                raise Unavailable(str(err)) from err

        return await trio.to_thread.run_sync(call, limiter=self._limiter)

    async def _fetch_one(self, sql: str, params: Sequence[Any]) -> Row | None:
        return await self._run(lambda db: db.execute(sql, params).fetchone())

    async def _fetch_all(self, sql: str, params: Sequence[Any]) -> list[Row]:
        return await self._run(lambda db: db.execute(sql, params).fetchall())

    async def _count(self, table: str) -> int:
        row = await self._fetch_one(f"SELECT COUNT(*) FROM {table}", ())
        return row[0] if row else 0

    async def _change(self, sql: str, params: Sequence[Any]) -> bool:
        """Run one autocommitted write; True when it touched at least one row."""
        return await self._run(lambda db: db.execute(sql, params).rowcount > 0)

    # --- lifecycle ---------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and create the schema when it is missing (idempotent)."""

        def connect() -> None:
            if self._db is None:
                try:
                    self._db = _connect(self._path)
                except sqlite3.Error as err:
                    raise Unavailable(f"cannot open sqlite {self._path!r}: {err}") from err

        await trio.to_thread.run_sync(connect, limiter=self._limiter)

    async def aclose(self) -> None:
        """Close the connection; pending writes are already committed (autocommit/atomic)."""

        def close() -> None:
            db, self._db = self._db, None
            if db is not None:
                db.close()

        await trio.to_thread.run_sync(close, limiter=self._limiter)

    # --- runners -----------------------------------------------------------------------
    async def upsert_runner(self, runner: data.Runner, file_name: str) -> None:
        """Insert a runner row, or refresh name/file_name/type of the row with this id."""
        rd = runner.data or data.RunnerData()
        params = (None if runner.id is None else runner.id.value, rd.name, file_name, int(rd.runner_type))
        sql = (
            f"INSERT INTO runner ({_cols(RUNNER_COLUMNS)}) VALUES ({_marks(4)}) "
            "ON CONFLICT(id) DO UPDATE SET name = excluded.name, "
            "file_name = excluded.file_name, runner_type = excluded.runner_type"
        )

        def describe(key: str) -> str:
            if key.endswith(".file_name"):
                return f"runner file_name '{file_name}' already exists"
            return f"runner name '{rd.name}' already exists"

        def upsert(db: sqlite_utils.Database) -> None:
            with _unique_as_already_exists(describe):
                db.execute(sql, params)

        await self._run(upsert)

    async def find_runner(self, runner_id: int) -> data.Runner | None:
        row = await self._fetch_one(f"{_RUNNER_SELECT} WHERE id = ?", (runner_id,))
        return runner_from_row(row) if row else None

    async def list_runners(self, limit: int | None = None, offset: int | None = None) -> list[data.Runner]:
        rows = await self._fetch_all(f"{_RUNNER_SELECT} ORDER BY id DESC LIMIT ? OFFSET ?", _page(limit, offset))
        return [runner_from_row(r) for r in rows]

    async def count_runners(self) -> int:
        return await self._count("runner")

    async def delete_runner(self, runner_id: int) -> bool:
        return await self._change("DELETE FROM runner WHERE id = ?", (runner_id,))

    # --- workers -----------------------------------------------------------------------
    async def create_worker(self, worker: data.WorkerData) -> int:
        """Insert and return the new id (autoincrement, not a snowflake)."""
        columns = WORKER_COLUMNS[1:]
        sql = f"INSERT INTO worker ({_cols(columns)}) VALUES ({_marks(len(columns))})"
        params = worker_params(worker)

        def insert(db: sqlite_utils.Database) -> int:
            with _unique_as_already_exists(_worker_name_taken(worker.name)):
                return cast(int, db.execute(sql, params).lastrowid)  # set by every INSERT

        return await self._run(insert)

    async def update_worker(self, worker_id: int, worker: data.WorkerData) -> bool:
        """Replace the whole definition; False when the id does not exist."""
        assignments = ", ".join(f"{c} = ?" for c in WORKER_COLUMNS[1:])
        sql = f"UPDATE worker SET {assignments} WHERE id = ?"
        params = (*worker_params(worker), worker_id)

        def update(db: sqlite_utils.Database) -> bool:
            with _unique_as_already_exists(_worker_name_taken(worker.name)):
                return db.execute(sql, params).rowcount > 0

        return await self._run(update)

    async def delete_worker(self, worker_id: int) -> bool:
        return await self._change("DELETE FROM worker WHERE id = ?", (worker_id,))

    async def find_worker(self, worker_id: int) -> data.Worker | None:
        row = await self._fetch_one(f"{_WORKER_SELECT} WHERE id = ?", (worker_id,))
        return worker_from_row(row) if row else None

    async def find_worker_by_name(self, name: str) -> data.Worker | None:
        row = await self._fetch_one(f"{_WORKER_SELECT} WHERE name = ?", (name,))
        return worker_from_row(row) if row else None

    async def list_workers(self, limit: int | None = None, offset: int | None = None) -> list[data.Worker]:
        rows = await self._fetch_all(f"{_WORKER_SELECT} ORDER BY id DESC LIMIT ? OFFSET ?", _page(limit, offset))
        return [worker_from_row(r) for r in rows]

    async def count_workers(self) -> int:
        return await self._count("worker")

    # --- jobs --------------------------------------------------------------------------
    async def create_job(self, job: data.Job, extras: bytes = b"") -> None:
        """Insert; AlreadyExists when the id or the uniq_key is taken."""
        sql = f"INSERT INTO job ({_cols(JOB_COLUMNS)}) VALUES ({_marks(len(JOB_COLUMNS))})"
        params = job_params(job, _TIMEOUT, extras)

        def insert(db: sqlite_utils.Database) -> None:
            with _unique_as_already_exists(_job_key_taken(job)):
                db.execute(sql, params)

        await self._run(insert)

    async def upsert_job(self, job: data.Job, extras: bytes = b"") -> None:
        """Insert or replace by id (retries and periodic re-runs reuse the job id).

        ``ON CONFLICT(id) DO UPDATE`` rather than ``INSERT OR REPLACE``: REPLACE would also
        silently delete a *different* job holding the same uniq_key; here that is AlreadyExists.
        """
        updates = ", ".join(f"{c} = excluded.{c}" for c in JOB_COLUMNS[1:])
        sql = (
            f"INSERT INTO job ({_cols(JOB_COLUMNS)}) VALUES ({_marks(len(JOB_COLUMNS))}) "
            f"ON CONFLICT(id) DO UPDATE SET {updates}"
        )
        params = job_params(job, _TIMEOUT, extras)

        def upsert(db: sqlite_utils.Database) -> None:
            with _unique_as_already_exists(_job_key_taken(job)):
                db.execute(sql, params)

        await self._run(upsert)

    async def find_job(self, job_id: int) -> data.Job | None:
        row = await self._fetch_one(f"{_JOB_SELECT} WHERE id = ?", (job_id,))
        return job_from_row(row, _TIMEOUT) if row else None

    async def find_job_extras(self, job_ids: Sequence[int]) -> dict[int, bytes]:
        ids = sorted(set(job_ids))
        if not ids:
            return {}
        rows = await self._fetch_all(
            f"SELECT id, extras FROM job WHERE id IN ({_marks(len(ids))}) AND extras IS NOT NULL", tuple(ids))
        return {int(jid): bytes(raw) for jid, raw in rows if raw}

    async def list_jobs(self, limit: int | None = None, offset: int | None = None, *,
                        before_id: int | None = None) -> list[data.Job]:
        if before_id is not None:
            rows = await self._fetch_all(f"{_JOB_SELECT} WHERE id < ? ORDER BY id DESC LIMIT ? OFFSET ?",
                                         (before_id, *_page(limit, offset)))
            return [job_from_row(r, _TIMEOUT) for r in rows]
        rows = await self._fetch_all(f"{_JOB_SELECT} ORDER BY id DESC LIMIT ? OFFSET ?", _page(limit, offset))
        return [job_from_row(r, _TIMEOUT) for r in rows]

    async def count_jobs(self) -> int:
        return await self._count("job")

    async def delete_job(self, job_id: int, *, grabbed_until: int | None = None) -> bool:
        if grabbed_until is None:
            return await self._change("DELETE FROM job WHERE id = ?", (job_id,))
        return await self._change("DELETE FROM job WHERE id = ? AND grabbed_until_time = ?", (job_id, grabbed_until))

    async def find_due_jobs(self, worker_ids: Sequence[int], run_before: int, now: int, limit: int) -> list[data.Job]:
        """Jobs of these workers with 0 < run_after_time <= run_before and a lease that
        ended (grabbed_until_time <= now), by run_after_time then priority DESC (then id,
        so equal rows come back in a stable order)."""
        ids = sorted(set(worker_ids))
        if not ids:
            return []
        sql = (
            f"{_JOB_SELECT} WHERE run_after_time > 0 AND run_after_time <= ? "
            f"AND grabbed_until_time <= ? AND worker_id IN ({_marks(len(ids))}) "
            "ORDER BY run_after_time, priority DESC, id LIMIT ?"
        )
        rows = await self._fetch_all(sql, (run_before, now, *ids, _page(limit, 0)[0]))
        return [job_from_row(r, _TIMEOUT) for r in rows]

    async def claim_job(self, job_id: int, expected_grabbed_until: int, grabbed_until: int, *,
                        run_after_time: int | None = None) -> bool:
        """Compare-and-set the lease; True when this caller won the claim."""
        if run_after_time is None:
            return await self._change(
                "UPDATE job SET grabbed_until_time = ? WHERE id = ? AND grabbed_until_time = ?",
                (grabbed_until, job_id, expected_grabbed_until),
            )
        return await self._change(
            "UPDATE job SET grabbed_until_time = ? WHERE id = ? AND grabbed_until_time = ? AND run_after_time = ?",
            (grabbed_until, job_id, expected_grabbed_until, run_after_time),
        )

    # --- job results -------------------------------------------------------------------
    async def add_results(self, results: Sequence[data.JobResult]) -> None:
        """Insert many results in one transaction (callers batch for throughput).

        All or nothing: a clashing id rolls the whole batch back and raises AlreadyExists.
        """
        rows = [result_params(r, _TIMEOUT) for r in results]
        if not rows:
            return
        sql = f"INSERT INTO job_result ({_cols(JOB_RESULT_COLUMNS)}) VALUES ({_marks(len(JOB_RESULT_COLUMNS))})"

        def insert(db: sqlite_utils.Database) -> None:
            try:
                with db.atomic():
                    db.conn.executemany(sql, rows)
            except sqlite3.IntegrityError as err:
                if _unique_key(err) is None:
                    raise
                raise AlreadyExists(f"job result id {_taken_result_id(db, rows)} already exists") from err

        await self._run(insert)

    async def find_result(self, result_id: int) -> data.JobResult | None:
        row = await self._fetch_one(f"{_RESULT_SELECT} WHERE id = ?", (result_id,))
        return result_from_row(row, _TIMEOUT) if row else None

    async def list_results(self, limit: int | None = None, offset: int | None = None) -> list[data.JobResult]:
        sql = f"{_RESULT_SELECT} ORDER BY job_id DESC, id DESC LIMIT ? OFFSET ?"
        rows = await self._fetch_all(sql, _page(limit, offset))
        return [result_from_row(r, _TIMEOUT) for r in rows]

    async def list_results_by_job_id(self, job_id: int, limit: int = 1000) -> list[data.JobResult]:
        sql = f"{_RESULT_SELECT} WHERE job_id = ? ORDER BY end_time DESC, id DESC LIMIT ?"
        rows = await self._fetch_all(sql, (job_id, _page(limit, 0)[0]))
        return [result_from_row(r, _TIMEOUT) for r in rows]

    async def latest_result_of_job(self, job_id: int) -> data.JobResult | None:
        """The result with the highest end_time, or None."""
        sql = f"{_RESULT_SELECT} WHERE job_id = ? ORDER BY end_time DESC, id DESC LIMIT 1"
        row = await self._fetch_one(sql, (job_id,))
        return result_from_row(row, _TIMEOUT) if row else None

    async def count_results(self) -> int:
        return await self._count("job_result")

    async def delete_result(self, result_id: int) -> bool:
        return await self._change("DELETE FROM job_result WHERE id = ?", (result_id,))
