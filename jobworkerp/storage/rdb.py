"""The relational storage interface (workers, runners, RDB jobs, job results).

One protocol, several drivers (SQLite now, MySQL in Scalable mode), all held to the same
conformance suite in ``tests/storage``. Drivers speak the generated protobuf types so the
core never maps between parallel models. All times are epoch milliseconds.

Driver rules:
- every method is a trio coroutine and never blocks the event loop;
- a unique-key clash raises :class:`jobworkerp.errors.AlreadyExists` naming the key;
- a storage failure raises :class:`jobworkerp.errors.Unavailable`;
- lists are ordered as upstream: runners, workers and jobs by id DESC, results by job_id DESC
  (then id DESC), results of one job by end_time DESC.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from jobworkerp.proto.jobworkerp import data

# The default channel is stored under this literal name and reported as "absent".
DEFAULT_CHANNEL = "__default_job_channel__"


class Repository(Protocol):
    """Everything the core persists in the relational database."""

    async def open(self) -> None:
        """Connect and create the schema when it is missing (idempotent)."""

    async def aclose(self) -> None:
        """Flush pending writes and close connections."""

    # --- runners -------------------------------------------------------------------
    async def upsert_runner(self, runner: data.Runner, file_name: str) -> None:
        """Insert a runner row, or refresh name/type of the row with this id."""

    async def find_runner(self, runner_id: int) -> data.Runner | None: ...

    async def list_runners(self, limit: int | None = None, offset: int | None = None) -> list[data.Runner]: ...

    async def count_runners(self) -> int: ...

    async def delete_runner(self, runner_id: int) -> bool: ...

    # --- workers -------------------------------------------------------------------
    async def create_worker(self, worker: data.WorkerData) -> int:
        """Insert and return the new id (autoincrement, not a snowflake)."""

    async def update_worker(self, worker_id: int, worker: data.WorkerData) -> bool:
        """Replace the whole definition; False when the id does not exist."""

    async def delete_worker(self, worker_id: int) -> bool: ...

    async def find_worker(self, worker_id: int) -> data.Worker | None: ...

    async def find_worker_by_name(self, name: str) -> data.Worker | None: ...

    async def list_workers(self, limit: int | None = None, offset: int | None = None) -> list[data.Worker]: ...

    async def count_workers(self) -> int: ...

    # --- jobs kept in the RDB (backup, FORCED_RDB, scheduled, periodic) -------------
    async def create_job(self, job: data.Job, extras: bytes = b"") -> None:
        """Insert; AlreadyExists when the id or the uniq_key is taken. `extras`: the encoded
        JobExtras kept with the job (empty: none)."""

    async def upsert_job(self, job: data.Job, extras: bytes = b"") -> None:
        """Insert or replace by id (retries and periodic re-runs reuse the job id), extras
        included (a re-run writes the extras it carries)."""

    async def find_job(self, job_id: int) -> data.Job | None: ...

    async def find_job_extras(self, job_ids: Sequence[int]) -> dict[int, bytes]:
        """The encoded JobExtras kept with these jobs' rows, for the rows that have any: read
        when a row becomes a queue ticket or a run again (claim, restore), apart from the
        row itself so the v0.7 job reads stay as they are."""

    async def list_jobs(self, limit: int | None = None, offset: int | None = None, *,
                        before_id: int | None = None) -> list[data.Job]:
        """Rows newest first (by id); with `before_id`, only rows with a smaller id — keyset
        paging, which unlike OFFSET skips no row when rows before it are deleted meanwhile."""

    async def count_jobs(self) -> int: ...

    async def delete_job(self, job_id: int, *, grabbed_until: int | None = None) -> bool:
        """Delete a job's row; with `grabbed_until`, only while its lease still has that value
        (a compare-and-delete: a Delete loses to a claim that landed first)."""

    async def find_due_jobs(
        self, worker_ids: Sequence[int], run_before: int, now: int, limit: int
    ) -> list[data.Job]:
        """Jobs of these workers with 0 < run_after_time <= run_before and a lease that
        ended (grabbed_until_time <= now), by run_after_time then priority DESC."""

    async def claim_job(self, job_id: int, expected_grabbed_until: int, grabbed_until: int, *,
                        run_after_time: int | None = None) -> bool:
        """Compare-and-set the lease; True when this caller won the claim. With `run_after_time`
        the row must also still be the one the caller read: a re-run rewrites the row with a
        lease of 0 again, and a claim based on the older read must not take the new one (it
        would run the previous attempt's data a second time)."""

    # --- job results ---------------------------------------------------------------
    async def add_results(self, results: Sequence[data.JobResult]) -> None:
        """Insert many results in one transaction (callers batch for throughput)."""

    async def find_result(self, result_id: int) -> data.JobResult | None: ...

    async def list_results(self, limit: int | None = None, offset: int | None = None) -> list[data.JobResult]: ...

    async def list_results_by_job_id(self, job_id: int, limit: int = 1000) -> list[data.JobResult]: ...

    async def latest_result_of_job(self, job_id: int) -> data.JobResult | None:
        """The result with the highest end_time, or None."""

    async def count_results(self) -> int: ...

    async def delete_result(self, result_id: int) -> bool: ...
