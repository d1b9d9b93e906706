"""The test's own ledger of what it did and saw, and what that allows the server to show.

Everything here is kept from OUTSIDE the server: which jobs were accepted (got an id), for which
worker, which worker definitions were sent when, which deletes, restarts and faults happened,
and what each waiter (DIRECT caller, Listen) received. Concurrency makes the definition a job
ran under uncertain, so expectations are sets: every definition that could have been in force
from the job's enqueue on (see `WorkerModel.possible_specs`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from jobworkerp.worker.executor import GIVE_UP_AFTER
from tests.invariants.ops import WorkerSpec

# Result statuses by name, so this module does not depend on the generated enum's int values.
SUCCESS, ERROR_AND_RETRY, FATAL_ERROR, MAX_RETRY, OTHER_ERROR, CANCELLED = (
    "SUCCESS", "ERROR_AND_RETRY", "FATAL_ERROR", "MAX_RETRY", "OTHER_ERROR", "CANCELLED")


def now_ms() -> float:
    """Wall-clock ms: comparable with the server's own timestamps (same host)."""
    return time.time() * 1000


@dataclass
class WorkerVersion:
    spec: WorkerSpec | None  # None: a delete
    sent_at: float
    done_at: float | None = None  # None: no answer (still running, or the connection broke)
    ok: bool | None = None  # True applied, False rejected, None unknown
    error: str | None = None  # what the call raised, for the failure report

    def outcome(self) -> str:
        what = "delete" if self.spec is None else f"define {self.spec.describe()}"
        said = "applied" if self.ok else f"{'refused' if self.ok is False else 'unknown'} ({self.error})"
        return f"{what}: {said}"


@dataclass
class WorkerModel:
    sym: str
    name: str
    id: int | None = None
    versions: list[WorkerVersion] = field(default_factory=list)

    def possible_specs(self, since: float) -> list[WorkerSpec | None]:
        """Definitions that may be in force at some point from `since` on.

        The last change known to be applied before `since` is the baseline; any change whose
        call overlapped it or came later may have landed after it (the server's order of two
        overlapping calls is unknown), so it is possible too.
        """
        applied_before = [v for v in self.versions if v.ok and v.done_at is not None and v.done_at <= since]
        floor = max((v.sent_at for v in applied_before), default=0.0)
        return [v.spec for v in self.versions if v.ok is not False and (v.done_at is None or v.done_at >= floor)]


@dataclass
class Call:
    """One RPC as the test saw it."""

    sent_at: float
    done_at: float | None = None
    error: str | None = None  # gRPC status name + message, or the transport error
    result_status: str | None = None  # for calls that return a JobResult
    result_id: int | None = None
    detail: str = ""


@dataclass
class JobRecord:
    """One enqueue, accepted or not."""

    ref: int
    worker_sym: str
    worker_id: int
    action: str
    when: str
    uniq: str | None
    args: bytes
    child_args: bytes | None  # what a next_workers job of it gets as args (faulty `ok` only)
    sent_at: float
    run_after_time: int = 0
    id: int | None = None
    enqueue: Call | None = None  # for DIRECT: carries the result
    direct: bool = False  # the enqueue returned a result (the server treated it as DIRECT)
    listens: list[Call] = field(default_factory=list)
    deletes: list[Call] = field(default_factory=list)
    final_seen_at: float | None = None  # first time a waiter of it got a final result

    def label(self) -> str:
        return f"j{self.ref}(id {self.id}, {self.worker_sym} {self.action} {self.when})"


@dataclass
class Restart:
    kill: bool
    start: float
    end: float | None = None


@dataclass
class FaultRecord:
    ops: tuple[str, ...]
    at: float
    armed: bool


@dataclass
class Ledger:
    seed: int
    mode: str
    id_floor: int  # every id minted during this sequence is >= this (snowflake: ms << 22)
    workers: dict[str, WorkerModel] = field(default_factory=dict)
    jobs: dict[int, JobRecord] = field(default_factory=dict)  # by ref
    rejected: list[JobRecord] = field(default_factory=list)  # enqueues that got an error
    uniq_conflicts: list[tuple[JobRecord, int]] = field(default_factory=list)  # (request, holder id)
    other_deletes: dict[int, list[Call]] = field(default_factory=dict)  # deletes of listed jobs by id
    restarts: list[Restart] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    shutdown_errors: list[str] = field(default_factory=list)  # graceful stops that did not exit 0
    operations_done: int = 0

    # --- lookups -------------------------------------------------------------------------
    def by_id(self) -> dict[int, JobRecord]:
        return {j.id: j for j in self.jobs.values() if j.id is not None}

    def worker_ids(self) -> dict[int, WorkerModel]:
        return {w.id: w for w in self.workers.values() if w.id is not None}

    def restarted_during(self, start: float, end: float | None) -> bool:
        """A stop or restart overlapped [start, end] (end None: still open)."""
        stop = float("inf") if end is None else end
        return any(r.start <= stop and (r.end is None or r.end >= start) for r in self.restarts)

    # A restart is recorded when the harness decides on it (`start`), and the signal lands some
    # time before `end` (the stop goes through a thread, and the new process starts after it): a
    # job sent after `start` may still have been accepted by the process then killed — soak seed
    # 305084 flagged such a job, lost with its memory queue, as vanished. So "stopped after the
    # job was sent" means the restart had not finished by then.

    def killed_after(self, start: float, before: float | None) -> bool:
        """A SIGKILL that may have landed between `start` and `before` (None: any time later)."""
        limit = float("inf") if before is None else before
        return any(r.kill and (r.end is None or r.end >= start) and r.start <= limit for r in self.restarts)

    def stopped_after(self, start: float) -> bool:
        """A stop or kill that may have landed after `start`."""
        return any(r.end is None or r.end >= start for r in self.restarts)


@dataclass
class Expectation:
    """What the server may show for one accepted job."""

    specs: list[WorkerSpec | None]
    deleted: bool  # a Delete of it may have taken effect (sent, and not answered "nothing deleted")
    surely_deleted: bool  # a Delete of it answered is_success=True
    worker_deleted: bool
    periodic: bool  # some possible definition is periodic
    far: bool  # scheduled minutes ahead: still waiting at the end
    lost_ok: bool  # Standalone memory queue across a restart: may vanish without a trace
    rerun_ok: bool  # could have been running at a SIGKILL: may run (and finish) twice
    statuses: set[str]  # acceptable final result statuses
    max_retry: int  # the most retries any possible definition allows

    @property
    def may_linger(self) -> bool:
        """May still be visibly scheduled after quiescence."""
        return (self.far or self.periodic) and not self.surely_deleted


def final_statuses(runner: str, action: str) -> set[str]:
    """The final status a job ends with when nothing interferes."""
    if runner == "faulty":
        return {"ok": {SUCCESS}, "fail": {OTHER_ERROR}}.get(action, {MAX_RETRY})
    return {MAX_RETRY} if runner == "false" else {SUCCESS}


def expectation(ledger: Ledger, job: JobRecord) -> Expectation:
    worker = ledger.workers[job.worker_sym]
    specs = worker.possible_specs(job.sent_at)
    live = [s for s in specs if s is not None]
    deletes = job.deletes + ledger.other_deletes.get(job.id or -1, [])
    deleted = any(c.detail != "is_success=False" for c in deletes)
    worker_deleted = any(s is None for s in specs)
    runner = live[0].runner if live else "faulty"
    statuses = final_statuses(runner, job.action)
    if deleted:
        statuses |= {CANCELLED}
    if worker_deleted:
        statuses |= {FATAL_ERROR}
    if sum(len(f.ops) for f in ledger.faults if f.armed) + 1 >= GIVE_UP_AFTER:
        # Injected faults that failed GIVE_UP_AFTER runs of one job in a row outside its runner
        # (the +1: one armed by an earlier sequence may still be waiting to fire): the server
        # ends such a job with FATAL_ERROR rather than run it again forever.
        statuses |= {FATAL_ERROR}
    if ledger.mode == "scalable" and ledger.killed_after(job.sent_at, job.final_seen_at):
        statuses |= {FATAL_ERROR}  # a SIGKILL between two of its steps: the orphan sweep ends it so
    memory_queued = any(s.response == "DIRECT" or (s.queue == "NORMAL" and not s.periodic_ms) for s in live)
    return Expectation(
        specs=specs,
        deleted=deleted,
        surely_deleted=any(c.detail == "is_success=True" for c in deletes),
        worker_deleted=worker_deleted,
        periodic=any(s.periodic_ms for s in live),
        far=job.when == "far",
        lost_ok=ledger.mode == "standalone" and memory_queued and job.when != "far"
        and ledger.stopped_after(job.sent_at),
        rerun_ok=ledger.killed_after(job.sent_at, job.final_seen_at),
        statuses=statuses,
        max_retry=max((s.retry[1] for s in live if s.retry), default=0),
    )
