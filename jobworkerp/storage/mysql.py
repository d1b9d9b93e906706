"""MySQL/MariaDB driver of :class:`jobworkerp.storage.rdb.Repository` (Scalable mode).

Same observable behaviour as :mod:`jobworkerp.storage.sqlite` (both run the conformance
suite in ``tests/storage``); this module only differs where MySQL forces it to:

- connections come from :class:`~jobworkerp.storage.mysql_pool.MysqlPool`, which hides
  trio-mysql's pitfalls (bytes for text, dict-escaping injection, connections left broken
  by cancellation); single statements autocommit, ``add_results`` is one transaction;
- ``open()`` applies the ordered migrations of :mod:`jobworkerp.storage.mysql_schema`
  (the database itself must exist: creating it needs privileges the server should not have);
- MySQL's ``ON DUPLICATE KEY UPDATE`` fires on *any* unique key, so it would let an upsert
  overwrite the row owning a clashing name or uniq_key. Upserts are therefore
  ``UPDATE … WHERE id`` then ``INSERT``, and a clash on another key is AlreadyExists, as in
  SQLite's ``ON CONFLICT(id)``. FOUND_ROWS makes the UPDATE count matched rows, so
  "exists but unchanged" is not mistaken for "missing";
- a deadlock (InnoDB rolled the statement or transaction back) is retried a few times;
- an over-long value for a sized column (strict mode) is InvalidArgument naming the column.

Mapping rules shared with the SQLite driver: absent channel ↔ :data:`DEFAULT_CHANNEL`,
absent retry policy ↔ {NONE, 0, 0, 0, 2.0}, absent id messages ↔ 0, grabbed_until_time
None ↔ 0, next_workers as comma-joined ids. ``timeout`` needs no reinterpretation: the
column is BIGINT UNSIGNED.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import trio
import trio_mysql

from jobworkerp.errors import AlreadyExists, InvalidArgument, Unavailable
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.migrations import MigrationError, migrate
from jobworkerp.storage.mysql_pool import MysqlParams, MysqlPool, MysqlTls, Session
from jobworkerp.storage.mysql_schema import (
    JOB_COLUMNS,
    JOB_RESULT_COLUMNS,
    MIGRATIONS,
    RUNNER_COLUMNS,
    SEED_RUNNERS,
    SEED_RUNNERS_SQL,
    WORKER_COLUMNS,
    MysqlMigrationTarget,
    cols,
    quote,
)
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

T = TypeVar("T")
Row = tuple[Any, ...]
# (unique key name, offending value) → message for AlreadyExists
Describe = Callable[[str, str], str]

ER_DUP_ENTRY = 1062
ER_DUP_ENTRY_WITH_KEY_NAME = 1586
ER_DATA_TOO_LONG = 1406
ER_LOCK_DEADLOCK = 1213
ER_BAD_DB_ERROR = 1049

# MySQL LIMIT has no "-1 = all"; the documented idiom is the largest unsigned 64-bit value.
_NO_LIMIT = (1 << 64) - 1
_DEADLOCK_ATTEMPTS = 3

# What a failing statement or connection attempt can raise: trio-mysql's errors, its connect
# timeout (trio.fail_after), and raw network errors it does not wrap on every path.
_DRIVER_ERRORS = (trio_mysql.err.MySQLError, trio.TooSlowError, trio.BrokenResourceError, OSError)

_DUPLICATE = re.compile(r"Duplicate entry '(?P<entry>.*)' for key '(?P<key>[^']+)'", re.DOTALL)
_TOO_LONG = re.compile(r"Data too long for column '(?P<column>[^']+)'")


def _marks(n: int) -> str:
    return ", ".join(["%s"] * n)


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({cols(columns)}) VALUES ({_marks(len(columns))})"


def _update_sql(table: str, columns: Sequence[str]) -> str:
    assignments = ", ".join(f"{quote(c)} = %s" for c in columns)
    return f"UPDATE {table} SET {assignments} WHERE `id` = %s"


_RUNNER_SELECT = f"SELECT {cols(RUNNER_COLUMNS)} FROM runner"
_WORKER_SELECT = f"SELECT {cols(WORKER_COLUMNS)} FROM worker"
_JOB_SELECT = f"SELECT {cols(JOB_COLUMNS)} FROM job"
_RESULT_SELECT = f"SELECT {cols(JOB_RESULT_COLUMNS)} FROM job_result"

_RUNNER_INSERT = _insert_sql("runner", RUNNER_COLUMNS)
_RUNNER_INSERT_AUTO_ID = _insert_sql("runner", RUNNER_COLUMNS[1:])
_RUNNER_UPDATE = _update_sql("runner", RUNNER_COLUMNS[1:])
_WORKER_INSERT = _insert_sql("worker", WORKER_COLUMNS[1:])
_WORKER_UPDATE = _update_sql("worker", WORKER_COLUMNS[1:])
_JOB_INSERT = _insert_sql("job", JOB_COLUMNS)
_JOB_UPDATE = _update_sql("job", JOB_COLUMNS[1:])
_RESULT_INSERT = _insert_sql("job_result", JOB_RESULT_COLUMNS)


# --- error translation ----------------------------------------------------------------
def _error_code(err: BaseException) -> int | None:
    args = getattr(err, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _duplicate(err: BaseException) -> tuple[str, str] | None:
    """(key name, value) of a duplicate-key error; the key without MySQL 8's ``table.`` prefix."""
    if _error_code(err) not in (ER_DUP_ENTRY, ER_DUP_ENTRY_WITH_KEY_NAME):
        return None
    match = _DUPLICATE.search(str(err.args[-1]))
    if match is None:
        return "", ""
    return match["key"].rsplit(".", 1)[-1], match["entry"]


def _translate(err: BaseException, where: str, describe: Describe | None) -> Exception:
    """The domain error for a driver failure: AlreadyExists, InvalidArgument or Unavailable."""
    duplicate = _duplicate(err)
    if duplicate is not None and describe is not None:
        return AlreadyExists(describe(*duplicate))
    if _error_code(err) == ER_DATA_TOO_LONG:
        match = _TOO_LONG.search(str(err.args[-1]))
        column = match["column"] if match else "value"
        return InvalidArgument(column, "too long for its MySQL column")
    if _error_code(err) == ER_BAD_DB_ERROR:
        return Unavailable(f"{where}: {err.args[-1]} (create it with CHARACTER SET utf8mb4 first)")
    if isinstance(err, trio.TooSlowError):
        return Unavailable(f"{where}: timed out connecting")
    message = err.args[-1] if getattr(err, "args", None) else repr(err)
    return Unavailable(f"{where}: {message}")


# --- value conversions ----------------------------------------------------------------


def _limit(limit: int | None) -> int:
    return _NO_LIMIT if limit is None or limit < 0 else int(limit)


def _offset(offset: int | None) -> int:
    return 0 if offset is None or offset < 0 else int(offset)


# --- runners --------------------------------------------------------------------------


def _runner_key_taken(name: str, file_name: str) -> Describe:
    def describe(key: str, entry: str) -> str:
        if key == "runner_file_name":
            return f"runner file_name '{file_name}' already exists"
        if key == "runner_name":
            return f"runner name '{name}' already exists"
        return f"runner id {entry} already exists"

    return describe


# --- workers --------------------------------------------------------------------------






def _worker_name_taken(name: str) -> Describe:
    return lambda _key, _entry: f"worker name '{name}' already exists"


# --- jobs -----------------------------------------------------------------------------




def _job_key_taken(job: data.Job) -> Describe:
    def describe(key: str, _entry: str) -> str:
        if key == "job_uniq_key":
            return f"job uniq_key '{job.data.uniq_key}' already exists"
        return f"job id {job.id.value} already exists"

    return describe


# --- job results ----------------------------------------------------------------------




def _result_id_taken(_key: str, entry: str) -> str:
    return f"job result id {entry} already exists"


# --- statements shared by several methods ---------------------------------------------
async def _update_or_insert(session: Session, update: str, update_params: Row, insert: str, insert_params: Row) -> None:
    """Upsert by primary key without touching rows that own another unique key.

    UPDATE first (the common case for retries and re-seeding); when no row matched,
    INSERT. A concurrent INSERT of the same id can slip in between: its PRIMARY clash sends
    us back to the UPDATE. Clashes on other keys propagate (AlreadyExists upstream).
    """
    for _ in range(3):
        if await session.execute(update, update_params) > 0:
            return
        try:
            await session.execute(insert, insert_params)
            return
        except trio_mysql.err.IntegrityError as err:
            duplicate = _duplicate(err)
            if duplicate is None or duplicate[0] != "PRIMARY":
                raise
    raise Unavailable("upsert kept racing with concurrent inserts and deletes of the same id")


_TIMEOUT = TimeoutCodec()


class MysqlRepository:
    """Repository over one MySQL/MariaDB database, safe to share between trio tasks.

    ``unix_socket`` (when set) is used instead of host/port, e.g. for Debian's root account
    that authenticates by socket credentials. ``max_connections`` bounds the pool; callers
    beyond it wait for a free connection.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 3306,
        user: str = "root",
        password: str = "",
        database: str = "jobworkerp",
        unix_socket: str | None = None,
        max_connections: int = 10,
        connect_timeout: int = 10,
        tls: MysqlTls | None = None,
    ) -> None:
        params = MysqlParams(
            host=host,
            port=port,
            user=user,
            password=password,
            database=database,
            unix_socket=unix_socket,
            connect_timeout=connect_timeout,
            tls=tls,
        )
        self._pool = MysqlPool(params, max_connections)
        self._where = f"{params.describe()}, database {database!r}"
        self._database = database
        self._open_lock = trio.Lock()

    @property
    def pool(self) -> MysqlPool:
        """The connection pool (exposed for diagnostics and driver tests)."""
        return self._pool

    async def _run(self, fn: Callable[[Session], Awaitable[T]], describe: Describe | None = None) -> T:
        """Run ``fn`` on one pooled connection and translate driver errors.

        A deadlock means InnoDB rolled back the statement or transaction, so running ``fn``
        again is safe; anything else is translated once.
        """
        for attempt in range(1, _DEADLOCK_ATTEMPTS + 1):
            try:
                async with self._pool.session() as session:
                    return await fn(session)
            except _DRIVER_ERRORS as err:
                if _error_code(err) == ER_LOCK_DEADLOCK and attempt < _DEADLOCK_ATTEMPTS:
                    continue
                raise _translate(err, self._where, describe) from err
        raise AssertionError("unreachable")

    async def _fetch_one(self, sql: str, params: Sequence[Any]) -> Row | None:
        return await self._run(lambda s: s.fetch_one(sql, params))

    async def _fetch_all(self, sql: str, params: Sequence[Any]) -> list[Row]:
        return await self._run(lambda s: s.fetch_all(sql, params))

    async def _count(self, table: str) -> int:
        row = await self._fetch_one(f"SELECT COUNT(*) FROM {table}", ())
        return int(row[0]) if row else 0

    async def _change(self, sql: str, params: Sequence[Any], describe: Describe | None = None) -> bool:
        """Run one autocommitted write; True when it matched at least one row."""
        return await self._run(lambda s: s.execute(sql, params), describe) > 0

    # --- lifecycle ---------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, apply pending migrations and seed the built-in runners (idempotent)."""
        async with self._open_lock:  # a second caller waits for the migrations to finish
            if self._pool.is_open:
                return
            self._pool.open()
            try:
                await self._run(self._prepare)
            except BaseException:
                await self._pool.aclose()
                raise

    async def _prepare(self, session: Session) -> None:
        try:
            await migrate(MysqlMigrationTarget(session, self._database), MIGRATIONS)
        except (MigrationError, RuntimeError) as err:
            raise Unavailable(f"{self._where}: {err}") from err
        await session.execute_many(SEED_RUNNERS_SQL, SEED_RUNNERS)

    async def aclose(self) -> None:
        """Close the pool; every write was committed when its call returned."""
        await self._pool.aclose()

    # --- runners -----------------------------------------------------------------------
    async def upsert_runner(self, runner: data.Runner, file_name: str) -> None:
        """Insert a runner row, or refresh name/file_name/type of the row with this id."""
        rd = runner.data or data.RunnerData()
        values = (rd.name, file_name, int(rd.runner_type))
        describe = _runner_key_taken(rd.name, file_name)
        if runner.id is None:
            await self._change(_RUNNER_INSERT_AUTO_ID, values, describe)
            return
        runner_id = int(runner.id.value)
        await self._run(
            lambda s: _update_or_insert(s, _RUNNER_UPDATE, (*values, runner_id), _RUNNER_INSERT, (runner_id, *values)),
            describe,
        )

    async def find_runner(self, runner_id: int) -> data.Runner | None:
        row = await self._fetch_one(f"{_RUNNER_SELECT} WHERE `id` = %s", (int(runner_id),))
        return runner_from_row(row) if row else None

    async def list_runners(self, limit: int | None = None, offset: int | None = None) -> list[data.Runner]:
        sql = f"{_RUNNER_SELECT} ORDER BY `id` DESC LIMIT %s OFFSET %s"
        rows = await self._fetch_all(sql, (_limit(limit), _offset(offset)))
        return [runner_from_row(r) for r in rows]

    async def count_runners(self) -> int:
        return await self._count("runner")

    async def delete_runner(self, runner_id: int) -> bool:
        return await self._change("DELETE FROM runner WHERE `id` = %s", (int(runner_id),))

    # --- workers -----------------------------------------------------------------------
    async def create_worker(self, worker: data.WorkerData) -> int:
        """Insert and return the new id (autoincrement, not a snowflake)."""
        params = worker_params(worker)
        return await self._run(lambda s: s.insert(_WORKER_INSERT, params), _worker_name_taken(worker.name))

    async def update_worker(self, worker_id: int, worker: data.WorkerData) -> bool:
        """Replace the whole definition; False when the id does not exist."""
        params = (*worker_params(worker), int(worker_id))
        return await self._change(_WORKER_UPDATE, params, _worker_name_taken(worker.name))

    async def delete_worker(self, worker_id: int) -> bool:
        return await self._change("DELETE FROM worker WHERE `id` = %s", (int(worker_id),))

    async def find_worker(self, worker_id: int) -> data.Worker | None:
        row = await self._fetch_one(f"{_WORKER_SELECT} WHERE `id` = %s", (int(worker_id),))
        return worker_from_row(row) if row else None

    async def find_worker_by_name(self, name: str) -> data.Worker | None:
        row = await self._fetch_one(f"{_WORKER_SELECT} WHERE `name` = %s", (name,))
        return worker_from_row(row) if row else None

    async def list_workers(self, limit: int | None = None, offset: int | None = None) -> list[data.Worker]:
        sql = f"{_WORKER_SELECT} ORDER BY `id` DESC LIMIT %s OFFSET %s"
        rows = await self._fetch_all(sql, (_limit(limit), _offset(offset)))
        return [worker_from_row(r) for r in rows]

    async def count_workers(self) -> int:
        return await self._count("worker")

    # --- jobs --------------------------------------------------------------------------
    async def create_job(self, job: data.Job, extras: bytes = b"") -> None:
        """Insert; AlreadyExists when the id or the uniq_key is taken."""
        await self._change(_JOB_INSERT, job_params(job, _TIMEOUT, extras), _job_key_taken(job))

    async def upsert_job(self, job: data.Job, extras: bytes = b"") -> None:
        """Insert or replace by id (retries and periodic re-runs reuse the job id).

        AlreadyExists when a *different* job holds the uniq_key (see module docstring).
        """
        params = job_params(job, _TIMEOUT, extras)
        job_id, rest = params[0], params[1:]
        await self._run(
            lambda s: _update_or_insert(s, _JOB_UPDATE, (*rest, job_id), _JOB_INSERT, params),
            _job_key_taken(job),
        )

    async def find_job(self, job_id: int) -> data.Job | None:
        row = await self._fetch_one(f"{_JOB_SELECT} WHERE `id` = %s", (int(job_id),))
        return job_from_row(row, _TIMEOUT) if row else None

    async def find_job_extras(self, job_ids: Sequence[int]) -> dict[int, bytes]:
        ids = sorted({int(j) for j in job_ids})
        if not ids:
            return {}
        rows = await self._fetch_all(
            f"SELECT `id`, `extras` FROM job WHERE `id` IN ({_marks(len(ids))}) AND `extras` IS NOT NULL", tuple(ids))
        return {int(jid): bytes(raw) for jid, raw in rows if raw}

    async def list_jobs(self, limit: int | None = None, offset: int | None = None, *,
                        before_id: int | None = None) -> list[data.Job]:
        if before_id is not None:
            sql = f"{_JOB_SELECT} WHERE `id` < %s ORDER BY `id` DESC LIMIT %s OFFSET %s"
            rows = await self._fetch_all(sql, (int(before_id), _limit(limit), _offset(offset)))
            return [job_from_row(r, _TIMEOUT) for r in rows]
        sql = f"{_JOB_SELECT} ORDER BY `id` DESC LIMIT %s OFFSET %s"
        rows = await self._fetch_all(sql, (_limit(limit), _offset(offset)))
        return [job_from_row(r, _TIMEOUT) for r in rows]

    async def count_jobs(self) -> int:
        return await self._count("job")

    async def delete_job(self, job_id: int, *, grabbed_until: int | None = None) -> bool:
        if grabbed_until is None:
            return await self._change("DELETE FROM job WHERE `id` = %s", (int(job_id),))
        return await self._change("DELETE FROM job WHERE `id` = %s AND `grabbed_until_time` = %s",
                                  (int(job_id), int(grabbed_until)))

    async def find_due_jobs(self, worker_ids: Sequence[int], run_before: int, now: int, limit: int) -> list[data.Job]:
        """Jobs of these workers with 0 < run_after_time <= run_before and a lease that
        ended (grabbed_until_time <= now), by run_after_time then priority DESC (then id,
        so equal rows come back in a stable order; ``job_claim_order`` serves this order)."""
        ids = sorted({int(w) for w in worker_ids})
        if not ids:
            return []
        sql = (
            f"{_JOB_SELECT} WHERE `run_after_time` > 0 AND `run_after_time` <= %s "
            f"AND `grabbed_until_time` <= %s AND `worker_id` IN ({_marks(len(ids))}) "
            "ORDER BY `run_after_time`, `priority` DESC, `id` LIMIT %s"
        )
        rows = await self._fetch_all(sql, (int(run_before), int(now), *ids, _limit(limit)))
        return [job_from_row(r, _TIMEOUT) for r in rows]

    async def claim_job(self, job_id: int, expected_grabbed_until: int, grabbed_until: int, *,
                        run_after_time: int | None = None) -> bool:
        """Compare-and-set the lease; True when this caller won the claim.

        One UPDATE: InnoDB re-reads the row under its lock, so of two racing claims the
        second sees the first's lease and matches nothing.
        """
        if run_after_time is None:
            return await self._change(
                "UPDATE job SET `grabbed_until_time` = %s WHERE `id` = %s AND `grabbed_until_time` = %s",
                (int(grabbed_until), int(job_id), int(expected_grabbed_until)),
            )
        return await self._change(
            "UPDATE job SET `grabbed_until_time` = %s WHERE `id` = %s AND `grabbed_until_time` = %s"
            " AND `run_after_time` = %s",
            (int(grabbed_until), int(job_id), int(expected_grabbed_until), int(run_after_time)),
        )

    # --- job results -------------------------------------------------------------------
    async def add_results(self, results: Sequence[data.JobResult]) -> None:
        """Insert many results in one transaction (callers batch for throughput).

        All or nothing: a clashing id (stored already or repeated in the batch) rolls the
        whole batch back and raises AlreadyExists naming that id.
        """
        rows = [result_params(r, _TIMEOUT) for r in results]
        if not rows:
            return

        async def insert(session: Session) -> None:
            async with session.transaction():
                await session.execute_many(_RESULT_INSERT, rows)

        await self._run(insert, _result_id_taken)

    async def find_result(self, result_id: int) -> data.JobResult | None:
        row = await self._fetch_one(f"{_RESULT_SELECT} WHERE `id` = %s", (int(result_id),))
        return result_from_row(row, _TIMEOUT) if row else None

    async def list_results(self, limit: int | None = None, offset: int | None = None) -> list[data.JobResult]:
        sql = f"{_RESULT_SELECT} ORDER BY `job_id` DESC, `id` DESC LIMIT %s OFFSET %s"
        rows = await self._fetch_all(sql, (_limit(limit), _offset(offset)))
        return [result_from_row(r, _TIMEOUT) for r in rows]

    async def list_results_by_job_id(self, job_id: int, limit: int = 1000) -> list[data.JobResult]:
        sql = f"{_RESULT_SELECT} WHERE `job_id` = %s ORDER BY `end_time` DESC, `id` DESC LIMIT %s"
        rows = await self._fetch_all(sql, (int(job_id), _limit(limit)))
        return [result_from_row(r, _TIMEOUT) for r in rows]

    async def latest_result_of_job(self, job_id: int) -> data.JobResult | None:
        """The result with the highest end_time, or None."""
        sql = f"{_RESULT_SELECT} WHERE `job_id` = %s ORDER BY `end_time` DESC, `id` DESC LIMIT 1"
        row = await self._fetch_one(sql, (int(job_id),))
        return result_from_row(row, _TIMEOUT) if row else None

    async def count_results(self) -> int:
        return await self._count("job_result")

    async def delete_result(self, result_id: int) -> bool:
        return await self._change("DELETE FROM job_result WHERE `id` = %s", (int(result_id),))
