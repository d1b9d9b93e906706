"""SQLite schema of the relational store (runner, worker, job, job_result), applied by ``SqliteRepository.open``.

Kept apart from the driver so the DDL reads as one document. The schema is applied as
recorded migration steps (`MIGRATIONS`, table `schema_version`); every statement is
``IF NOT EXISTS`` / ``INSERT OR IGNORE`` so opening an existing file is a no-op, and a
restart never duplicates the built-in runner rows.

The column tuples are the single source of the SELECT/INSERT column order: the driver
unpacks rows positionally (no ``sqlite3.Row`` factory, which would leak into sqlite-utils).
"""

from __future__ import annotations

from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.migrations import Migration

RUNNER_COLUMNS = ("id", "name", "file_name", "runner_type")

WORKER_COLUMNS = (
    "id",
    "name",
    "runner_id",
    "runner_settings",
    "retry_type",
    "interval",
    "max_interval",
    "max_retry",
    "basis",
    "periodic_interval",
    "channel",
    "queue_type",
    "response_type",
    "store_success",
    "store_failure",
    "next_workers",
    "use_static",
)

JOB_COLUMNS = (
    "id",
    "worker_id",
    "args",
    "uniq_key",
    "enqueue_time",
    "grabbed_until_time",
    "run_after_time",
    "retried",
    "priority",
    "timeout",
    "extras",  # encoded jobworkerp.ext.JobExtras, NULL for most jobs (migration 2)
)

JOB_RESULT_COLUMNS = (
    "id",
    "job_id",
    "worker_id",
    "args",
    "uniq_key",
    "status",
    "output",
    "retried",
    "priority",
    "enqueue_time",
    "run_after_time",
    "start_time",
    "end_time",
    "timeout",
)

# `timeout` columns hold the uint64 proto value reinterpreted as a signed 64-bit integer
# (SQLite INTEGER is signed), so no bits are lost; the driver converts both ways.
SCHEMA = """
CREATE TABLE IF NOT EXISTS runner (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    file_name   TEXT    NOT NULL UNIQUE,
    runner_type INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS worker (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT    NOT NULL UNIQUE,
    runner_id         INTEGER NOT NULL,
    runner_settings   BLOB    NOT NULL,
    retry_type        INTEGER NOT NULL DEFAULT 0,
    interval          INTEGER NOT NULL DEFAULT 0,
    max_interval      INTEGER NOT NULL DEFAULT 0,
    max_retry         INTEGER NOT NULL DEFAULT 0,
    basis             REAL    NOT NULL DEFAULT 2.0,
    periodic_interval INTEGER NOT NULL DEFAULT 0,
    channel           TEXT    NOT NULL,
    queue_type        INTEGER NOT NULL DEFAULT 0,
    response_type     INTEGER NOT NULL DEFAULT 0,
    store_success     INTEGER NOT NULL DEFAULT 0,
    store_failure     INTEGER NOT NULL DEFAULT 0,
    next_workers      TEXT    NOT NULL DEFAULT '',
    use_static        INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS job (
    id                 INTEGER PRIMARY KEY,
    worker_id          INTEGER NOT NULL,
    args               BLOB    NOT NULL,
    uniq_key           TEXT,
    enqueue_time       INTEGER NOT NULL DEFAULT 0,
    grabbed_until_time INTEGER NOT NULL DEFAULT 0,
    run_after_time     INTEGER NOT NULL DEFAULT 0,
    retried            INTEGER NOT NULL DEFAULT 0,
    priority           INTEGER NOT NULL DEFAULT 0,
    timeout            INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS job_uniq_key ON job (uniq_key);
CREATE INDEX IF NOT EXISTS job_worker_id ON job (worker_id);
CREATE INDEX IF NOT EXISTS job_due ON job (run_after_time, grabbed_until_time, priority);

CREATE TABLE IF NOT EXISTS job_result (
    id             INTEGER PRIMARY KEY,
    job_id         INTEGER NOT NULL,
    worker_id      INTEGER NOT NULL,
    args           BLOB    NOT NULL,
    uniq_key       TEXT,
    status         INTEGER NOT NULL DEFAULT 0,
    output         BLOB    NOT NULL,
    retried        INTEGER NOT NULL DEFAULT 0,
    priority       INTEGER NOT NULL DEFAULT 0,
    enqueue_time   INTEGER NOT NULL DEFAULT 0,
    run_after_time INTEGER NOT NULL DEFAULT 0,
    start_time     INTEGER NOT NULL DEFAULT 0,
    end_time       INTEGER NOT NULL DEFAULT 0,
    timeout        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS job_result_job_id_end_time ON job_result (job_id, end_time);
CREATE INDEX IF NOT EXISTS job_result_worker_id_job_id ON job_result (worker_id, job_id);
CREATE INDEX IF NOT EXISTS job_result_uniq_key ON job_result (uniq_key);
"""

# Built-in runners (id, name, file_name, runner_type). SLACK_NOTIFICATION (5) is
# deliberately not seeded: this implementation does not ship that runner.
SEED_RUNNERS: tuple[tuple[int, str, str, int], ...] = tuple(
    (rt.value, rt.name, f"builtin{rt.value}", rt.value)
    for rt in (
        data.RunnerType.COMMAND,
        data.RunnerType.HTTP_REQUEST,
        data.RunnerType.GRPC_UNARY,
        data.RunnerType.DOCKER,
    )
)


# Apply-once schema steps (jobworkerp.storage.migrations); add new steps at the end.
MIGRATIONS = (
    Migration(1, "initial schema (spec 4.1)", tuple(st.strip() for st in SCHEMA.split(";") if st.strip())),
    Migration(2, "job.extras: what the server keeps with a job beyond v0.7 (trace context, streaming)",
              ("ALTER TABLE job ADD COLUMN extras BLOB",)),
)
