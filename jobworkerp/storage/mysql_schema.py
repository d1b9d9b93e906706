"""MySQL/MariaDB schema of the relational store (runner, worker, job, job_result) as ordered migrations.

Column order comes from :mod:`jobworkerp.storage.schema_sqlite` (the single source the two
drivers unpack rows by), so a row means the same tuple in both drivers. Differences from the
SQLite DDL, and why:

- sizes follow upstream's MySQL schema: worker.name and job.uniq_key VARCHAR(128),
  worker.channel VARCHAR(32); over-long values fail (strict mode) instead of truncating;
- ``timeout`` is BIGINT UNSIGNED, so the full uint64 proto value is stored as is;
- ``basis`` is DOUBLE (a FLOAT column would read 1.1 back as 1.100000023841858);
- blobs are LONGBLOB so large args/outputs are limited only by max_allowed_packet;
- text uses ``utf8mb4_bin``: unique names compare byte-wise and case-sensitively, like
  SQLite's default. (Unlike SQLite, it pads trailing spaces: 'a' and 'a ' clash.)
- the job table carries upstream's due-job indexes plus ``job_claim_order``, which matches
  the dispatcher's ORDER BY exactly, so a LIMIT-ed poll stops early instead of sorting every
  due row (EXPLAIN on 20k rows: range scan on it, no filesort). A ``FOR UPDATE SKIP LOCKED``
  claim only skips correctly when the ORDER BY is served by an index (tested in
  ``tests/storage/test_mysql_driver.py``); such a query must say ``FORCE INDEX
  (job_claim_order)``, because on a small table the optimizer prefers ``job_due`` plus a
  filesort, which locks every examined row.

Identifiers are back-quoted everywhere because ``interval`` is a reserved word in MySQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from jobworkerp.storage.migrations import Migration
from jobworkerp.storage.mysql_pool import Session
from jobworkerp.storage.schema_sqlite import (
    JOB_COLUMNS,
    JOB_RESULT_COLUMNS,
    RUNNER_COLUMNS,
    SEED_RUNNERS,
    WORKER_COLUMNS,
)

__all__ = [
    "JOB_COLUMNS",
    "JOB_RESULT_COLUMNS",
    "MIGRATIONS",
    "RUNNER_COLUMNS",
    "SEED_RUNNERS",
    "WORKER_COLUMNS",
    "MysqlMigrationTarget",
    "cols",
    "quote",
]

_TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"


def quote(identifier: str) -> str:
    """Back-quote one identifier (ours are fixed names; no user input reaches here)."""
    return f"`{identifier}`"


def cols(columns: Sequence[str]) -> str:
    return ", ".join(quote(c) for c in columns)


_CREATE_RUNNER = f"""
CREATE TABLE IF NOT EXISTS runner (
    `id`          BIGINT       NOT NULL AUTO_INCREMENT,
    `name`        VARCHAR(128) NOT NULL,
    `file_name`   VARCHAR(512) NOT NULL,
    `runner_type` INT          NOT NULL,
    PRIMARY KEY (`id`),
    UNIQUE KEY runner_name (`name`),
    UNIQUE KEY runner_file_name (`file_name`)
) {_TABLE_OPTIONS}
"""

_CREATE_WORKER = f"""
CREATE TABLE IF NOT EXISTS worker (
    `id`                BIGINT       NOT NULL AUTO_INCREMENT,
    `name`              VARCHAR(128) NOT NULL,
    `runner_id`         BIGINT       NOT NULL,
    `runner_settings`   LONGBLOB     NOT NULL,
    `retry_type`        INT          NOT NULL DEFAULT 0,
    `interval`          INT UNSIGNED NOT NULL DEFAULT 0,
    `max_interval`      INT UNSIGNED NOT NULL DEFAULT 0,
    `max_retry`         INT UNSIGNED NOT NULL DEFAULT 0,
    `basis`             DOUBLE       NOT NULL DEFAULT 2.0,
    `periodic_interval` INT UNSIGNED NOT NULL DEFAULT 0,
    `channel`           VARCHAR(32)  NOT NULL,
    `queue_type`        INT          NOT NULL DEFAULT 0,
    `response_type`     INT          NOT NULL DEFAULT 0,
    `store_success`     TINYINT(1)   NOT NULL DEFAULT 0,
    `store_failure`     TINYINT(1)   NOT NULL DEFAULT 0,
    `next_workers`      TEXT         NOT NULL,
    `use_static`        TINYINT(1)   NOT NULL DEFAULT 0,
    PRIMARY KEY (`id`),
    UNIQUE KEY worker_name (`name`),
    KEY worker_channel (`channel`)
) {_TABLE_OPTIONS}
"""

_CREATE_JOB = f"""
CREATE TABLE IF NOT EXISTS job (
    `id`                 BIGINT          NOT NULL,
    `worker_id`          BIGINT          NOT NULL,
    `args`               LONGBLOB        NOT NULL,
    `uniq_key`           VARCHAR(128)    NULL,
    `enqueue_time`       BIGINT          NOT NULL DEFAULT 0,
    `grabbed_until_time` BIGINT          NOT NULL DEFAULT 0,
    `run_after_time`     BIGINT          NOT NULL DEFAULT 0,
    `retried`            INT UNSIGNED    NOT NULL DEFAULT 0,
    `priority`           INT             NOT NULL DEFAULT 0,
    `timeout`            BIGINT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (`id`),
    UNIQUE KEY job_uniq_key (`uniq_key`),
    KEY job_worker_id (`worker_id`),
    KEY job_due_worker (`run_after_time`, `grabbed_until_time`, `worker_id`, `priority`),
    KEY job_due (`run_after_time`, `grabbed_until_time`, `priority`),
    KEY job_claim_order (`run_after_time`, `priority` DESC, `id`)
) {_TABLE_OPTIONS}
"""

_CREATE_JOB_RESULT = f"""
CREATE TABLE IF NOT EXISTS job_result (
    `id`             BIGINT          NOT NULL,
    `job_id`         BIGINT          NOT NULL,
    `worker_id`      BIGINT          NOT NULL,
    `args`           LONGBLOB        NOT NULL,
    `uniq_key`       VARCHAR(128)    NULL,
    `status`         INT             NOT NULL DEFAULT 0,
    `output`         LONGBLOB        NOT NULL,
    `retried`        INT UNSIGNED    NOT NULL DEFAULT 0,
    `priority`       INT             NOT NULL DEFAULT 0,
    `enqueue_time`   BIGINT          NOT NULL DEFAULT 0,
    `run_after_time` BIGINT          NOT NULL DEFAULT 0,
    `start_time`     BIGINT          NOT NULL DEFAULT 0,
    `end_time`       BIGINT          NOT NULL DEFAULT 0,
    `timeout`        BIGINT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (`id`),
    KEY job_result_job_id_end_time (`job_id`, `end_time`),
    KEY job_result_worker_id_job_id (`worker_id`, `job_id`),
    KEY job_result_uniq_key (`uniq_key`)
) {_TABLE_OPTIONS}
"""

# Append new steps; never edit or reorder a released one (databases record the versions).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="runner, worker, job and job_result tables (upstream v0.7 layout)",
        statements=(_CREATE_RUNNER, _CREATE_WORKER, _CREATE_JOB, _CREATE_JOB_RESULT),
    ),
    Migration(
        version=2,
        description="job.extras: what the server keeps with a job beyond v0.7 (trace context, streaming)",
        statements=("ALTER TABLE job ADD COLUMN `extras` LONGBLOB NULL",),
    ),
)

ER_DUP_FIELDNAME = 1060  # ADD COLUMN of a column that exists: that step already ran

# Inserted on every open, like the SQLite driver: a built-in runner row removed by hand
# comes back at the next start. Only a duplicate key is ignored (INSERT IGNORE would also
# swallow data errors).
SEED_RUNNERS_SQL = (
    f"INSERT INTO runner ({cols(RUNNER_COLUMNS)}) VALUES (%s, %s, %s, %s) ON DUPLICATE KEY UPDATE `id` = `id`"
)

_CREATE_SCHEMA_VERSION = f"""
CREATE TABLE IF NOT EXISTS schema_version (
    `version`     INT          NOT NULL,
    `description` VARCHAR(255) NOT NULL,
    `applied_at`  BIGINT       NOT NULL,
    PRIMARY KEY (`version`)
) {_TABLE_OPTIONS}
"""

# Seconds to wait for another process's migration before giving up.
MIGRATION_LOCK_TIMEOUT_SECONDS = 60


class MysqlMigrationTarget:
    """:class:`~jobworkerp.storage.migrations.MigrationTarget` over one MySQL session.

    Cross-process exclusion uses a named lock (GET_LOCK), not a table lock: DDL commits
    implicitly and would release a LOCK TABLES. The name is derived from the database so
    two databases on one server migrate independently (lock names are limited to 64 chars).
    """

    def __init__(self, session: Session, database: str) -> None:
        self._session = session
        digest = hashlib.sha1(database.encode()).hexdigest()[:24]
        self._lock_name = f"jobworkerp.migrate.{digest}"

    @asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        row = await self._session.fetch_one(
            "SELECT GET_LOCK(%s, %s)", (self._lock_name, MIGRATION_LOCK_TIMEOUT_SECONDS)
        )
        if not row or row[0] != 1:
            raise RuntimeError(f"timed out waiting for the schema migration lock {self._lock_name!r}")
        try:
            yield
        finally:
            # Skipped when the connection is broken: closing it releases the lock anyway.
            if not self._session.broken:
                with trio.move_on_after(5) as scope:
                    scope.shield = True
                    await self._session.fetch_one("SELECT RELEASE_LOCK(%s)", (self._lock_name,))

    async def ensure_version_table(self) -> None:
        await self._session.execute(_CREATE_SCHEMA_VERSION)

    async def applied_versions(self) -> set[int]:
        rows = await self._session.fetch_all("SELECT `version` FROM schema_version")
        return {int(version) for (version,) in rows}

    async def apply(self, migration: Migration) -> None:
        for statement in migration.statements:
            try:
                await self._session.execute(statement)
            except Exception as e:
                # DDL commits at once: a crash between an ADD COLUMN and its version record
                # leaves the column; running the step again must not fail on it.
                args = getattr(e, "args", ())
                if not (args and args[0] == ER_DUP_FIELDNAME):
                    raise
        await self._session.execute(
            "INSERT INTO schema_version (`version`, `description`, `applied_at`) "
            "VALUES (%s, %s, UNIX_TIMESTAMP(NOW(3)) * 1000)",
            (migration.version, migration.description),
        )
