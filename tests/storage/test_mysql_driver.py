"""MySQL-only checks: the trio-mysql safety wrapper, the pool, and the on-server layout.

The behaviour every driver shares is in the conformance suite; this module covers what only
exists here (see ``jobworkerp/storage/mysql_pool.py``): parameter refusal, connections discarded
after cancellation, str for text, bounded pool, migrations, and the claim paths under real
concurrency.
"""

from __future__ import annotations

import contextlib
import gc
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import pytest
import trio
import trio_mysql
from trio_mysql.connections import Connection

from jobworkerp.errors import InvalidArgument, Unavailable
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage import mysql_pool
from jobworkerp.storage.mysql import MysqlRepository
from jobworkerp.storage.mysql_pool import MysqlParams, check_params
from jobworkerp.storage.rdb import DEFAULT_CHANNEL
from tests.storage.mysql_support import mysql_repository, socket_path

pytestmark = pytest.mark.timeout(60)

NOW = 1_700_000_000_000
U64_MAX = (1 << 64) - 1


@pytest.fixture
async def mysql_repo(mysql_database: MysqlParams) -> AsyncIterator[MysqlRepository]:
    repository = mysql_repository(mysql_database)
    await repository.open()
    try:
        yield repository
    finally:
        await repository.aclose()


async def raw(repo: MysqlRepository, sql: str, params: tuple = ()) -> list[tuple]:
    async with repo.pool.session() as session:
        return await session.fetch_all(sql, params)


def job(job_id: int, **fields: object) -> data.Job:
    base: dict[str, object] = {"worker_id": data.WorkerId(value=1), "args": b"a", "run_after_time": NOW - 1}
    base.update(fields)
    return data.Job(id=data.JobId(value=job_id), data=data.JobData(**base))


def result(result_id: int, job_id: int = 1) -> data.JobResult:
    return data.JobResult(
        id=data.JobResultId(value=result_id),
        data=data.JobResultData(job_id=data.JobId(value=job_id), output=data.ResultOutput(items=[b"x" * 64])),
    )


# --- the trio-mysql safety wrapper ----------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        ({"'); DROP TABLE job; -- ": 1},),  # the escape_dict injection (CVE-2024-36039 class)
        ({1, 2},),
        (frozenset({"a"}),),
        ([1, 2],),
        (data.Priority.HIGH,),  # an IntEnum would be rendered as the string 'Priority.HIGH'
    ],
)
async def test_container_and_enum_parameters_are_refused_before_the_query(
    mysql_repo: MysqlRepository, params: tuple
) -> None:
    async with mysql_repo.pool.session() as session:
        with pytest.raises(TypeError, match="refusing query parameter"):
            await session.fetch_one("SELECT %s", params)
        assert not session.broken  # nothing was sent, the connection stays usable
        assert await session.fetch_one("SELECT COUNT(*) FROM job") == (0,)


async def test_a_dict_of_parameters_is_refused(mysql_repo: MysqlRepository) -> None:
    with pytest.raises(TypeError, match="tuple or list"):
        check_params({"a": 1})  # type: ignore[arg-type]
    async with mysql_repo.pool.session() as session:
        with pytest.raises(TypeError):
            await session.fetch_one("SELECT %(a)s", {"a": 1})  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await session.execute_many("INSERT INTO job (`id`) VALUES (%s)", [({"x": 1},)])
    assert await mysql_repo.count_jobs() == 0


async def test_text_columns_come_back_as_str(mysql_repo: MysqlRepository) -> None:
    name = "wörker-名前-😀"  # 4-byte UTF-8 needs utf8mb4
    worker_id = await mysql_repo.create_worker(
        data.WorkerData(
            name=name,
            runner_id=data.RunnerId(value=1),
            runner_settings=b"\xff\x00",
            channel="ch-é",
            next_workers=[data.WorkerId(value=3)],
        )
    )
    [(got_name, channel, next_workers, settings)] = await raw(
        mysql_repo, "SELECT name, channel, next_workers, runner_settings FROM worker"
    )
    assert (type(got_name), type(channel), type(next_workers)) == (str, str, str)
    assert (got_name, channel, next_workers) == (name, "ch-é", "3")
    assert settings == b"\xff\x00"
    found = await mysql_repo.find_worker_by_name(name)
    assert found is not None and found.id.value == worker_id and found.data.channel == "ch-é"
    assert await mysql_repo.find_worker_by_name("WÖRKER-名前-😀") is None  # binary collation


async def test_cancelled_query_discards_its_connection_and_the_next_call_works(
    mysql_database: MysqlParams,
) -> None:
    repo = mysql_repository(mysql_database, max_connections=1)
    watcher = mysql_repository(mysql_database, max_connections=1)
    await repo.open()
    await watcher.open()
    try:
        [(before,)] = await raw(repo, "SELECT CONNECTION_ID()")
        assert repo.pool.idle == 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Cancelled once the server runs it; waiting for the query (60 s) would hit the guard.
            with trio.fail_after(30), trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(raw, repo, "SELECT SLEEP(60)")
                    await wait_for_server(watcher, "INFO LIKE 'SELECT SLEEP%%'", before)
                    scope.cancel()
            assert scope.cancelled_caught
            assert repo.pool.idle == 0 and repo.pool.in_use == 0  # discarded, not pooled
            gc.collect()
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)]  # socket really closed
        assert await repo.count_runners() == 4
        [(after,)] = await raw(repo, "SELECT CONNECTION_ID()")
        assert after != before
        with contextlib.suppress(trio_mysql.err.MySQLError):  # the server may still sleep for the lost client
            await raw(watcher, f"KILL {int(before)}")
    finally:
        await repo.aclose()
        await watcher.aclose()


async def wait_for_server(repo: MysqlRepository, condition: str, *params: object, present: bool = True) -> None:
    """Wait until a server thread matching ``condition`` (SQL on PROCESSLIST; ``ID = %s`` is
    prepended) exists, or with ``present=False`` until none does. The server is what we wait
    on, so poll; the guard only turns a hang into a failure."""
    sql = f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s AND {condition}"
    with trio.fail_after(30):
        while True:
            [(count,)] = await raw(repo, sql, params)
            if bool(count) == present:
                return
            await trio.sleep(0.01)


@dataclass
class IoCut:
    """Cancels the armed task at its ``at``-th network operation on a MySQL connection.

    Counts ``send_all`` / ``receive_some`` as trio-mysql issues them (a read served from the
    connection's buffer is no I/O and no checkpoint, so it is not counted). With ``half`` the
    cut write sends the first half of its bytes before the cancellation, as a cancel landing
    inside ``send_all`` would.
    """

    task: trio.lowlevel.Task | None = None
    scope: trio.CancelScope | None = None
    at: int | None = None
    half: bool = False
    ops: list[str] = field(default_factory=list)
    connection_ids: set[int] = field(default_factory=set)
    _last: str = ""

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_write, real_read = Connection._write_bytes, Connection._read_bytes
        cut = self

        async def write_bytes(conn: Connection, data: bytes) -> None:
            if cut.armed():
                cut._last = data[5:12].decode("ascii", "replace").split(" ")[0]  # BEGIN, INSERT, COMMIT
                if await cut.step(conn, f"send {cut._last}"):
                    await conn._sock.send_all(data[: len(data) // 2])
                    await cut.cancel()
            await real_write(conn, data)

        async def read_bytes(conn: Connection, num_bytes: int) -> bytes:
            if cut.armed() and len(conn._rbuf) - conn._rbuf_offset < num_bytes:
                await cut.step(conn, f"reply {cut._last}")
            return await real_read(conn, num_bytes)

        monkeypatch.setattr(Connection, "_write_bytes", write_bytes)
        monkeypatch.setattr(Connection, "_read_bytes", read_bytes)

    def armed(self) -> bool:
        return self.task is not None and trio.lowlevel.current_task() is self.task

    async def step(self, conn: Connection, what: str) -> bool:
        """Record one I/O operation; cancel before it (or, for a half write, say so) at ``at``."""
        self.connection_ids.add(conn.thread_id())
        index = len(self.ops)
        self.ops.append(what)
        if index != self.at:
            return False
        if self.half and what.startswith("send"):
            return True
        await self.cancel()
        return False

    async def cancel(self) -> None:
        assert self.scope is not None
        self.scope.cancel()
        await trio.lowlevel.checkpoint()  # raises Cancelled here, in the middle of the exchange
        raise AssertionError("not cancelled")


async def test_a_cancelled_batch_is_all_or_nothing(
    mysql_repo: MysqlRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled at every network operation of its transaction (before it, or halfway through a
    write): never a partial batch. Nothing is committed until the COMMIT went out whole, and all
    of it once the COMMIT was answered."""
    # trio-mysql splits a bulk INSERT into statements of at most max_stmt_length (~1 MB); a
    # smaller cap gives the same several-statement transaction with far fewer rows.
    monkeypatch.setattr(mysql_pool._QuietCursor, "max_stmt_length", 16_384)
    size = 400
    cut = IoCut()
    cut.install(monkeypatch)
    stored = 0
    attempt = 0

    async def insert_batch(at: int | None, half: bool) -> tuple[bool, list[str]]:
        """One add_results cancelled at I/O operation ``at``; whether the batch is stored."""
        nonlocal stored, attempt
        attempt += 1
        batch = [result(attempt * size + i + 1) for i in range(size)]
        assert await mysql_repo.count_results() == stored  # also leaves a pooled, logged-in connection
        cut.ops, cut.connection_ids, cut.at, cut.half = [], set(), at, half
        with trio.CancelScope() as scope:
            cut.task, cut.scope = trio.lowlevel.current_task(), scope
            try:
                await mysql_repo.add_results(batch)
            finally:
                cut.task = None
        assert scope.cancelled_caught == (at is not None), (at, cut.ops)
        if scope.cancelled_caught:  # the connection was dropped: the server commits or rolls back
            [connection_id] = cut.connection_ids
            await wait_for_server(mysql_repo, "TRUE", connection_id, present=False)
        count = await mysql_repo.count_results()
        assert count in (stored, stored + size), f"partial batch: {count - stored} of {size} rows ({cut.ops})"
        committed = count == stored + size
        stored = count
        return committed, cut.ops

    committed, ops = await insert_batch(None, False)  # uncancelled: learn the exchange
    assert committed
    assert ops[:2] == ["send BEGIN", "reply BEGIN"] and ops[-2:] == ["send COMMIT", "reply COMMIT"], ops
    assert ops.count("send INSERT") >= 3, ops  # so some statements can have run and later ones not
    for at, what in enumerate(ops):
        for half in (False, True) if what.startswith("send") else (False,):
            committed, seen = await insert_batch(at, half)
            assert len(seen) == at + 1, (at, seen)  # cut where intended
            # The operations before the cut one completed; the COMMIT counts only when sent whole.
            if "send COMMIT" not in seen[:-1]:
                assert not committed, f"committed although cancelled at {seen[-1]} (half={half})"
    await mysql_repo.add_results([result(10**9)])  # the pool still works
    assert await mysql_repo.find_result(10**9) is not None


async def test_pool_is_bounded_by_max_connections(mysql_database: MysqlParams) -> None:
    repo = mysql_repository(mysql_database, max_connections=2)
    await repo.open()
    try:
        seen: set[int] = set()
        peak = 0

        async def slow_query() -> None:
            nonlocal peak
            async with repo.pool.session() as session:
                peak = max(peak, repo.pool.in_use)
                [(connection_id, _)] = await session.fetch_all("SELECT CONNECTION_ID(), SLEEP(0.2)")
                seen.add(connection_id)

        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(slow_query)
        assert time.monotonic() - started >= 0.55  # 6 queries, 2 at a time, 0.2 s each
        assert peak == 2 and len(seen) <= 2

        async with trio.open_nursery() as nursery:  # many concurrent repository calls
            for i in range(20):
                nursery.start_soon(repo.create_worker, data.WorkerData(name=f"w{i}", runner_id=data.RunnerId(value=1)))
        assert await repo.count_workers() == 20
        assert repo.pool.connections_opened <= 2
    finally:
        await repo.aclose()


async def kill_connections(repo: MysqlRepository, *connection_ids: int) -> None:
    """KILL from a separate repository, as a DBA or a server restart would; returns once the
    server has closed them (their threads left the process list)."""
    killer = mysql_repository(repo.pool.params, max_connections=1)
    await killer.open()
    try:
        for connection_id in connection_ids:
            await raw(killer, f"KILL {int(connection_id)}")
        for connection_id in connection_ids:
            await wait_for_server(killer, "TRUE", connection_id, present=False)
    finally:
        await killer.aclose()


async def test_a_long_idle_connection_is_pinged_and_replaced_when_dead(
    mysql_repo: MysqlRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    [(victim,)] = await raw(mysql_repo, "SELECT CONNECTION_ID()")
    await kill_connections(mysql_repo, victim)
    monkeypatch.setattr(mysql_pool, "IDLE_PING_AFTER_SECONDS", 0.0)  # as if idle for long
    assert await mysql_repo.count_runners() == 4


async def test_a_lost_connection_fails_one_call_and_drops_its_idle_siblings(mysql_repo: MysqlRepository) -> None:
    """After a server restart every pooled connection is dead; only one caller pays for it."""
    async with mysql_repo.pool.session() as one, mysql_repo.pool.session() as two:
        [(first,)] = await one.fetch_all("SELECT CONNECTION_ID()")
        [(second,)] = await two.fetch_all("SELECT CONNECTION_ID()")
    assert mysql_repo.pool.idle == 2
    await kill_connections(mysql_repo, first, second)
    with pytest.raises(Unavailable, match="Lost connection|gone away"):
        await mysql_repo.count_runners()
    assert mysql_repo.pool.idle == 0
    assert await mysql_repo.count_runners() == 4


# --- claims under real concurrency ----------------------------------------------------
async def test_concurrent_claims_from_two_pools_never_double_claim(mysql_database: MysqlParams) -> None:
    """Two repositories (as two worker processes) race for the same due jobs."""
    first, second = mysql_repository(mysql_database), mysql_repository(mysql_database)
    await first.open()
    await second.open()
    try:
        for job_id in range(1, 41):
            await first.create_job(job(job_id))
        won: dict[str, list[int]] = {"first": [], "second": []}

        async def claimer(name: str, repo: MysqlRepository, lease: int) -> None:
            for due in await repo.find_due_jobs([1], run_before=NOW, now=NOW, limit=100):
                if await repo.claim_job(due.id.value, expected_grabbed_until=0, grabbed_until=lease):
                    won[name].append(due.id.value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(claimer, "first", first, NOW + 1_000)
            nursery.start_soon(claimer, "second", second, NOW + 2_000)
        assert sorted(won["first"] + won["second"]) == list(range(1, 41))
        for name, lease in (("first", NOW + 1_000), ("second", NOW + 2_000)):
            for job_id in won[name]:
                assert (await first.find_job(job_id)).data.grabbed_until_time == lease
    finally:
        await first.aclose()
        await second.aclose()


async def test_exactly_one_of_two_tasks_wins_each_claim(mysql_database: MysqlParams) -> None:
    repos = [mysql_repository(mysql_database), mysql_repository(mysql_database)]
    for r in repos:
        await r.open()
    try:
        for job_id in range(1, 21):
            await repos[0].create_job(job(job_id))

        async def claim(repo: MysqlRepository, job_id: int, lease: int, wins: list[int]) -> None:
            if await repo.claim_job(job_id, expected_grabbed_until=0, grabbed_until=lease):
                wins.append(lease)

        for job_id in range(1, 21):
            wins: list[int] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(claim, repos[0], job_id, NOW + 1, wins)
                nursery.start_soon(claim, repos[1], job_id, NOW + 2, wins)
            assert len(wins) == 1
    finally:
        for r in repos:
            await r.aclose()


async def test_claim_order_index_lets_skip_locked_claimers_take_disjoint_rows(mysql_repo: MysqlRepository) -> None:
    """A SKIP LOCKED claim is correct only when an index serves its ORDER BY.

    On a small or skewed table the optimizer may prefer ``job_due`` plus a filesort, which
    locks every examined row, so such a claim must pin the index with FORCE INDEX.
    """
    for job_id in range(1, 21):
        await mysql_repo.create_job(job(job_id, priority=data.Priority(job_id % 3 - 1)))
    sql = (
        "SELECT `id` FROM job FORCE INDEX (job_claim_order) "
        "WHERE `run_after_time` > 0 AND `run_after_time` <= %s AND `grabbed_until_time` <= %s "
        "ORDER BY `run_after_time`, `priority` DESC, `id` LIMIT 5 FOR UPDATE SKIP LOCKED"
    )
    [plan] = await raw(mysql_repo, "EXPLAIN " + sql, (NOW, NOW))
    assert plan[5] == "job_claim_order" and "filesort" not in (plan[-1] or "")
    first_locked = trio.Event()
    release = trio.Event()
    claims: dict[str, list[int]] = {}

    async def claimer(name: str, hold: bool) -> None:
        async with mysql_repo.pool.session() as session, session.transaction():
            claims[name] = [row[0] for row in await session.fetch_all(sql, (NOW, NOW))]
            if hold:
                first_locked.set()
                await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(claimer, "a", True)
        await first_locked.wait()
        await claimer("b", False)
        release.set()
    assert len(claims["a"]) == len(claims["b"]) == 5
    assert not set(claims["a"]) & set(claims["b"])


# --- schema, migrations and column encodings ------------------------------------------
async def test_tables_are_innodb_utf8mb4_with_the_claim_indexes(mysql_repo: MysqlRepository) -> None:
    database = mysql_repo.pool.params.database
    tables = await raw(
        mysql_repo,
        "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
        (database,),
    )
    assert {name: (engine, collation) for name, engine, collation in tables} == {
        name: ("InnoDB", "utf8mb4_bin") for name in ("runner", "worker", "job", "job_result", "schema_version")
    }
    rows = await raw(
        mysql_repo,
        "SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'job' GROUP BY INDEX_NAME",
        (database,),
    )
    assert dict(rows) == {
        "PRIMARY": "id",
        "job_uniq_key": "uniq_key",
        "job_worker_id": "worker_id",
        "job_due_worker": "run_after_time,grabbed_until_time,worker_id,priority",
        "job_due": "run_after_time,grabbed_until_time,priority",
        "job_claim_order": "run_after_time,priority,id",
    }


async def test_migrations_are_recorded_once_across_reopens(mysql_repo: MysqlRepository) -> None:
    await mysql_repo.aclose()
    await mysql_repo.open()
    await mysql_repo.aclose()
    await mysql_repo.open()
    rows = await raw(mysql_repo, "SELECT version, description FROM schema_version")
    assert [version for version, _ in rows] == [1, 2]
    assert all(isinstance(description, str) for _, description in rows)
    assert await mysql_repo.count_runners() == 4


async def test_a_half_applied_migration_is_completed_on_open(mysql_repo: MysqlRepository) -> None:
    """DDL commits implicitly: tables may exist without their version record after a crash."""
    await mysql_repo.create_worker(data.WorkerData(name="kept", runner_id=data.RunnerId(value=1)))
    await raw(mysql_repo, "DELETE FROM schema_version")
    await mysql_repo.aclose()
    await mysql_repo.open()
    # Step 2 (ADD COLUMN) ran again over the column it had added.
    assert await raw(mysql_repo, "SELECT version FROM schema_version") == [(1,), (2,)]
    assert (await mysql_repo.find_worker_by_name("kept")) is not None


async def test_a_schema_from_a_newer_release_is_refused(mysql_repo: MysqlRepository) -> None:
    await raw(mysql_repo, "INSERT INTO schema_version VALUES (99, 'from the future', 0)")
    await mysql_repo.aclose()
    with pytest.raises(Unavailable, match=r"versions \[99\] unknown to this release"):
        await mysql_repo.open()
    with pytest.raises(Unavailable):
        await mysql_repo.count_runners()  # a failed open leaves the repository closed


async def test_column_encodings_match_the_sqlite_driver(mysql_repo: MysqlRepository) -> None:
    await mysql_repo.create_worker(data.WorkerData(name="plain", runner_id=data.RunnerId(value=1)))
    await mysql_repo.create_worker(
        data.WorkerData(
            name="chained",
            runner_id=data.RunnerId(value=1),
            channel="gpu",
            next_workers=[data.WorkerId(value=3), data.WorkerId(value=12)],
        )
    )
    rows = await raw(
        mysql_repo,
        "SELECT channel, next_workers, retry_type, `interval`, max_interval, max_retry, basis FROM worker ORDER BY id",
    )
    assert rows == [(DEFAULT_CHANNEL, "", 0, 0, 0, 0, 2.0), ("gpu", "3,12", 0, 0, 0, 0, 2.0)]
    await mysql_repo.create_job(job(1, grabbed_until_time=None, timeout=U64_MAX))
    assert await raw(mysql_repo, "SELECT grabbed_until_time, timeout, uniq_key FROM job") == [(0, U64_MAX, None)]
    assert await raw(mysql_repo, "SELECT id, name, file_name, runner_type FROM runner ORDER BY id") == [
        (1, "COMMAND", "builtin1", 1),
        (2, "HTTP_REQUEST", "builtin2", 2),
        (3, "GRPC_UNARY", "builtin3", 3),
        (4, "DOCKER", "builtin4", 4),
    ]


async def test_values_too_long_for_their_column_are_invalid_arguments(mysql_repo: MysqlRepository) -> None:
    await mysql_repo.create_worker(data.WorkerData(name="n" * 128, runner_id=data.RunnerId(value=1)))
    with pytest.raises(InvalidArgument, match="^name:"):
        await mysql_repo.create_worker(data.WorkerData(name="n" * 129, runner_id=data.RunnerId(value=1)))
    with pytest.raises(InvalidArgument, match="^uniq_key:"):
        await mysql_repo.create_job(job(1, uniq_key="k" * 129))
    assert await mysql_repo.count_jobs() == 0


async def test_jobs_and_results_need_their_ids(mysql_repo: MysqlRepository) -> None:
    with pytest.raises(InvalidArgument, match="job.id"):
        await mysql_repo.create_job(data.Job(data=data.JobData()))
    with pytest.raises(InvalidArgument, match="job_result.id"):
        await mysql_repo.add_results([data.JobResult(data=data.JobResultData())])


# --- connecting -----------------------------------------------------------------------
async def test_unreachable_server_is_unavailable_and_names_the_address() -> None:
    repo = MysqlRepository(host="127.0.0.1", port=1, database="nothing", connect_timeout=2)
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1"):
        await repo.open()
    with pytest.raises(Unavailable):
        await repo.count_workers()


async def test_refused_login_is_unavailable_and_leaks_no_socket(mysql_database: MysqlParams) -> None:
    repo = mysql_repository(replace(mysql_database, user="jw_no_such_user", password="wrong", unix_socket=None))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(Unavailable, match="Access denied"):
            await repo.open()
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


async def test_missing_database_is_unavailable_with_a_hint(mysql_database: MysqlParams) -> None:
    repo = mysql_repository(replace(mysql_database, database=f"{mysql_database.database}_missing"))
    with pytest.raises(Unavailable, match="CHARACTER SET utf8mb4"):
        await repo.open()


async def test_unix_socket_connection(mysql_database: MysqlParams) -> None:
    path = socket_path()
    if not await trio.Path(path).exists():
        pytest.skip(f"no MariaDB socket at {path} (server reached over TCP only)")
    repo = mysql_repository(replace(mysql_database, unix_socket=path, host="unused", port=9), max_connections=1)
    await repo.open()
    try:
        [(host_info,)] = await raw(repo, "SELECT 1")
        assert repo.pool.params.describe().startswith(f"MySQL at unix socket {path}")
        assert await repo.count_runners() == 4
    finally:
        await repo.aclose()
