"""Quiescence and the five invariants, judged from outside the server.

1. Every accepted job has exactly one final outcome visible to its waiters (DIRECT reply, Listen
   answer, one stored final result — store flags are always on), or is still visibly scheduled
   (Find returns it, status PENDING/RUNNING) when it may be: far-ahead and periodic jobs.
   A DELETED job counts as finished when it is gone (no status, no row) with no final result
   (deleted before it ran: its waiters get an unstored CANCELLED notice) or one (it was running:
   CANCELLED, or it finished first). A job of a deleted worker likewise (FATAL_ERROR notice).
   In Standalone a job that could sit in the in-memory queue at a stop may vanish (documented).
2. No job status without a job behind it: every listed status's job is found by JobService.Find
   (which also finds running jobs).
3. No uniq_key held by a finished job: enqueueing the key again is accepted. (And a job still
   scheduled holds its key.)
4. No job has two final results — nor more retry attempts than its policy allows — unless it
   could have been running at a SIGKILL (at-least-once).
5. Nothing stuck: after quiescence no job of the sequence is PENDING or RUNNING (status, or a job
   row) unless it is a far-ahead or periodic job.

Quiescence is reached when nothing but far-ahead/periodic jobs has a status and every waiter
has its answer. Waiting is bounded (MAX_WAIT_S overall, and STABLE_S without any visible
change), which only turns a hang into a reported violation; then the checker waits once more for
a claim lease (SETTLE_S) and looks again, so a job that runs again after it finished shows up.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field

import trio
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.storage.redis_bus import RECHECK_S
from jobworkerp.usecase.jobs import DIRECT_WAIT_GRACE_S
from tests.invariants.driver import HOLDER, Driver, describe_error, status_name
from tests.invariants.model import (
    CANCELLED,
    ERROR_AND_RETRY,
    FATAL_ERROR,
    Call,
    Expectation,
    JobRecord,
    Ledger,
    expectation,
    now_ms,
)
from tests.invariants.ops import FAR_MS
from tests.invariants.rpc import CALL_TIMEOUT_S
from tests.invariants.server import CLAIM_LEASE_MS, FETCH_INTERVAL_MS

MAX_WAIT_S = 180.0
# Giving up on quiescence after this long without any visible change (statuses, results, waiters)
# only decides how soon a hang is reported: quiescence itself is reached as soon as every job has
# settled. Every job here takes well under a second per attempt on an idle machine and leases
# are 1-2 s, so these are sized for a machine several times slower or busy (a saturated
# one-slot channel with crashing runners moves slowly, but it moves).
STABLE_S = 30.0
SETTLE_S = (CLAIM_LEASE_MS + 3 * FETCH_INTERVAL_MS + 300) / 1000
POLL_S = 0.25
# How long a deleted running job may take to end (its runner host is killed and replaced): only
# decides how soon a delete that had no effect is reported, so sized for a slow, busy machine.
DELETE_SETTLE_S = 60.0
# The server's orphan sweep (Scalable) ends what a killed process left half done one grace period
# after it is first seen: max(10 s, 2 claim leases, 10 process leases) = 10 s with the test
# server's settings (tests/invariants/server.py), plus two sweep intervals of 5 s, plus margin.
ORPHAN_SWEEP_S = 30.0
PAGE = 500
_JOB_IN_MESSAGE = re.compile(r"job (\d+)")
_ERROR_ID = re.compile(r"error id ([0-9a-f]+)")  # how an INTERNAL answer names its line in the server log
_WITHIN_IN_MESSAGE = re.compile(r"no result within (\d+) ms")
DEBUG = os.environ.get("JWTEST_DEBUG") == "1"  # print why quiescence is not reached yet


@dataclass(frozen=True)
class Violation:
    invariant: int  # 1-5; 0 for what is outside them (a graceful stop that failed)
    kind: str
    subject: str
    detail: str
    job_id: int | None = None  # for the kinds a later look may show to be a job caught mid-step

    def describe(self) -> str:
        return f"[I{self.invariant} {self.kind}] {self.subject}: {self.detail}"


@dataclass
class Observation:
    at: float
    statuses: dict[int, str]  # job id -> JobStatus name, ids of this sequence
    rows: dict[int, data.Job]  # job rows (JobService.FindList) of this sequence
    results: dict[int, list[data.JobResult]]  # by job id, for this sequence's workers
    complete: bool = True  # False: results were not read (a polling observation)

    def finals(self, job_id: int) -> list[data.JobResult]:
        return [r for r in self.results.get(job_id, []) if status_name(r) != ERROR_AND_RETRY]


@dataclass
class Checker:
    driver: Driver
    violations: list[Violation] = field(default_factory=list)
    quiesced: bool = False
    rounds: int = 0

    @property
    def ledger(self) -> Ledger:
        return self.driver.ledger

    def flag(self, invariant: int, kind: str, subject: str, detail: str, job_id: int | None = None) -> None:
        self.violations.append(Violation(invariant, kind, subject, detail, job_id))

    def _injected(self, error: str) -> bool:
        """Whether a failed call failed on an injected fault. An unexpected error is answered
        INTERNAL with only an error id (the exception stays in the server log), so the log line
        with that id is read: its traceback names InjectedFault when the fault was ours."""
        if "injected fault" in error:
            return True
        match = _ERROR_ID.search(error)
        if match is None:
            return False
        try:
            log = self.driver.server.log_path.read_text(errors="replace")
        except OSError:
            return False
        at = log.find(f"error id {match.group(1)}")
        return at >= 0 and "InjectedFault" in log[at:at + 20_000].split("\n20", 1)[0]

    # --- looking at the server -------------------------------------------------------------
    async def observe(self, *, results: bool = True) -> Observation:
        """What the server shows of this sequence. Without `results` only statuses and rows are
        read: cheap enough to poll, where listing every stored result (periodic jobs pile up
        hundreds) would make the polling itself the bottleneck."""
        rpc, floor = self.driver.rpc, self.ledger.id_floor
        mine = set(self.ledger.worker_ids())
        statuses = await rpc.collect(lambda c: c.job_status.find_all(data.Empty(), timeout=CALL_TIMEOUT_S))
        rows: dict[int, data.Job] = {}
        offset = 0
        while True:  # newest first: stop at the first page reaching below this sequence's ids
            page = await rpc.collect(lambda c, o=offset: c.job.find_list(
                svc.FindListRequest(limit=PAGE, offset=o), timeout=CALL_TIMEOUT_S))
            rows.update({j.id.value: j for j in page if j.id.value >= floor and j.data.worker_id.value in mine})
            if len(page) < PAGE or page[-1].id.value < floor:
                break
            offset += PAGE
        found: dict[int, dict[int, data.JobResult]] = defaultdict(dict)
        offset = 0
        while results:  # ordered by job id, newest first
            page = await rpc.collect(lambda c, o=offset: c.job_result.find_list(
                svc.FindListRequest(limit=PAGE, offset=o), timeout=CALL_TIMEOUT_S))
            for r in page:
                if r.data.job_id.value >= floor and r.data.worker_id.value in mine:
                    found[r.data.job_id.value][r.id.value] = r
            if len(page) < PAGE or page[-1].data.job_id.value < floor:
                break
            offset += PAGE
        return Observation(
            at=now_ms(),
            statuses={s.id.value: data.JobStatus(s.status).name for s in statuses if s.id.value >= floor},
            rows=rows,
            results={k: sorted(v.values(), key=lambda r: (r.data.end_time, r.id.value)) for k, v in found.items()},
            complete=results,
        )

    def _may_linger(self, job_id: int, obs: Observation) -> bool:
        """Allowed to be PENDING/RUNNING after quiescence: far-ahead or periodic."""
        record = self.ledger.by_id().get(job_id)
        if record is not None:
            return expectation(self.ledger, record).may_linger
        row = obs.rows.get(job_id)
        if row is None:
            return False
        worker = self.ledger.worker_ids().get(row.data.worker_id.value)
        periodic = worker is not None and any(s is not None and s.periodic_ms for s in worker.possible_specs(0))
        return periodic or row.data.run_after_time > now_ms() + FAR_MS / 2

    def _open_waiters(self) -> list[tuple[JobRecord, Call]]:
        """Waiting calls whose answer is due (not those of jobs that may stay scheduled)."""
        out = []
        for record in self.ledger.jobs.values():
            linger = record.id is not None and expectation(self.ledger, record).may_linger
            calls = ([record.enqueue] if record.enqueue else []) + ([] if linger else record.listens)
            out += [(record, c) for c in calls if c.done_at is None]
        return out

    def _unsettled(self, obs: Observation) -> dict[int, str]:
        return {i: s for i, s in obs.statuses.items() if not self._may_linger(i, obs)}

    def _signature(self, obs: Observation) -> tuple:
        """What counts as progress: unsettled statuses, open waiters and (in a complete
        observation) the results of jobs that are not allowed to linger."""
        linger = {i for i in set(obs.results) | set(obs.statuses) if self._may_linger(i, obs)}
        results = sum(len(v) for k, v in obs.results.items() if k not in linger) if obs.complete else -1
        return (tuple(sorted(self._unsettled(obs).items())), results, len(self._open_waiters()))

    async def quiesce(self) -> Observation:
        """Wait until only far-ahead/periodic jobs are alive and every waiter has its answer,
        then once more for a claim lease; repeat if anything moved meanwhile."""
        deadline = trio.current_time() + MAX_WAIT_S
        obs = await self.observe(results=False)
        for _ in range(4):
            self.rounds += 1
            last_sig, last_change = None, trio.current_time()
            while True:
                if not self._unsettled(obs) and not self._open_waiters():
                    self.quiesced = True
                    break
                sig = self._signature(obs)
                if DEBUG:
                    elapsed = trio.current_time() - deadline + MAX_WAIT_S
                    print(f"quiesce {self.ledger.mode} seed {self.ledger.seed} +{elapsed:.1f}s:"
                          f" unsettled {self._unsettled(obs)} waiting "
                          f"{[(r.label(), c.sent_at) for r, c in self._open_waiters()]}", flush=True)
                if sig != last_sig:
                    last_sig, last_change = sig, trio.current_time()
                elif trio.current_time() - last_change > STABLE_S:
                    break
                if trio.current_time() > deadline:
                    break
                await trio.sleep(POLL_S)
                obs = await self.observe(results=False)
            before = self._signature(await self.observe())
            await trio.sleep(SETTLE_S)
            obs = await self.observe()
            if self._signature(obs) == before or trio.current_time() > deadline:
                return obs
            if DEBUG:
                print(f"settle {self.ledger.mode} seed {self.ledger.seed}: moved {before} -> {self._signature(obs)}",
                      flush=True)
            self.quiesced = False  # something moved after it looked finished: look again
        return obs  # complete: the last look is the one after the settle wait

    # --- judging ---------------------------------------------------------------------------
    async def check(self, obs: Observation) -> None:
        for error in self.ledger.shutdown_errors:
            self.flag(0, "graceful-stop", "server", error)
        await self._check_statuses(obs)
        for record in self.ledger.jobs.values():
            self._check_job(record, obs)
        self._check_discovered(obs)
        self._check_chains(obs)
        self._check_uniq_conflicts(obs)
        await self._late_listens(obs)
        await self._reverify()

    async def _reverify(self) -> None:
        """An observation reads statuses, rows and results one after another, so a job that was
        mid-step (placed, or ending) while they were read can look half there. Where nothing
        quiesces (a periodic worker that chains keeps making jobs) that is not a finding: each
        status / row mismatch is looked at again, job by job, and kept only if it persists.
        Likewise a job seen waiting past its time: where a periodic worker keeps a one-slot
        channel busy for good, some job is always waiting its turn (seed 947185) — it counts as
        stuck only if it does not move at all for STABLE_S."""
        suspects = {"status-without-job", "scheduled-without-status", "row-left-behind"}
        waiting = {"stuck", "orphaned"}
        if not any(v.kind in suspects | waiting for v in self.violations):
            return
        await trio.sleep(SETTLE_S)
        kept = []
        for v in self.violations:
            if v.kind in suspects and v.job_id is not None:
                status = (await self.driver.call(lambda c, i=v.job_id: c.job_status.find(
                    data.JobId(value=i), timeout=CALL_TIMEOUT_S))).status
                job = await self._find(v.job_id)
                if v.kind == "status-without-job" and (status is None or job is not None):
                    continue
                if v.kind != "status-without-job" and (status is not None or job is None):
                    continue
            if v.kind in waiting and v.job_id is not None and await self._moves(v.job_id):
                continue
            kept.append(v)
        self.violations = kept

    async def _moves(self, job_id: int) -> bool:
        """Whether a waiting job runs, ends or is re-placed within STABLE_S of now."""
        first: tuple | None = None
        with trio.move_on_after(STABLE_S):
            while True:
                status = (await self.driver.call(lambda c: c.job_status.find(
                    data.JobId(value=job_id), timeout=CALL_TIMEOUT_S))).status
                job = await self._find(job_id)
                if status is None or job is None:
                    return True
                look = (status, job.data.retried, job.data.run_after_time, job.data.grabbed_until_time)
                if first is None:
                    first = look
                elif look != first:
                    return True
                await trio.sleep(POLL_S)
        return False

    async def _find(self, job_id: int) -> data.Job | None:
        found = await self.driver.call(lambda c: c.job.find(data.JobId(value=job_id), timeout=CALL_TIMEOUT_S))
        return found.data

    def _subject(self, job_id: int) -> str:
        record = self.ledger.by_id().get(job_id)
        return record.label() if record is not None else f"job {job_id}"

    def _worker_text(self, worker_id: int) -> str:
        worker = self.ledger.worker_ids().get(worker_id)
        if worker is None:
            return f"worker {worker_id}"
        specs = worker.possible_specs(0)
        last = specs[-1] if specs else None
        return f"{worker.sym} ({'DELETED' if last is None else last.describe()})"

    async def _check_statuses(self, obs: Observation) -> None:
        """Invariants 2 and 5 over every status of this sequence's jobs."""
        for job_id, status in sorted(obs.statuses.items()):
            job = await self._find(job_id)
            if job is None:
                self.flag(2, "status-without-job", self._subject(job_id),
                          f"status {status} after quiescence, but JobService.Find finds no job"
                          + self._results_text(obs, job_id) + self._history_text(job_id), job_id)
                continue
            worker_id = job.data.worker_id.value
            if worker_id not in self.ledger.worker_ids() or self._may_linger(job_id, obs):
                continue
            worker = self.ledger.worker_ids()[worker_id]
            deleted = any(s is None for s in worker.possible_specs(0))
            due = job.data.run_after_time
            when = "instant" if not due else f"due {int(obs.at - due)} ms ago"
            kind = "orphaned" if deleted else "stuck"
            self.flag(5, kind, self._subject(job_id),
                      f"status {status} ({when}, retried={job.data.retried}) and nothing runs it; "
                      f"worker {self._worker_text(worker_id)}" + self._results_text(obs, job_id)
                      + self._history_text(job_id), job_id)

    def _history_text(self, job_id: int) -> str:
        """The worker definitions a ledger job could have met, and what happened to it."""
        record = self.ledger.by_id().get(job_id)
        if record is None:
            return ""
        exp = expectation(self.ledger, record)
        events = [f"deleted ({c.detail or c.error})" for c in record.deletes]
        events += [f"{what} {c.result_status or c.error or 'unanswered'}" for what, c in
                   ([("DIRECT reply", record.enqueue)] if record.direct and record.enqueue else [])
                   + [("Listen", c) for c in record.listens]]
        return self._spec_text(exp) + (f"; {', '.join(events)}" if events else "")

    def _results_text(self, obs: Observation, job_id: int) -> str:
        results = obs.results.get(job_id, [])
        if not results:
            return "; no result stored"
        return "; results: " + ", ".join(
            f"{status_name(r)}(retried={r.data.retried}, start +{r.data.start_time - self._t0(obs)}ms)"
            for r in results)

    def _t0(self, obs: Observation) -> int:
        return int(min((j.sent_at for j in self.ledger.jobs.values()), default=obs.at))

    def _check_job(self, record: JobRecord, obs: Observation) -> None:
        if record.id is None:
            self._check_unaccepted(record, obs)
            return
        exp = expectation(self.ledger, record)
        job_id = record.id
        subject = record.label()
        results = obs.results.get(job_id, [])
        finals = obs.finals(job_id)
        status = obs.statuses.get(job_id)
        row = obs.rows.get(job_id)
        if exp.may_linger:
            if status is None and row is None and not finals and not (exp.lost_ok or exp.worker_deleted or exp.deleted):
                self.flag(1, "scheduled-job-vanished", subject, "a far-ahead/periodic job is gone: no status, no row, "
                          "no result" + self._history_text(job_id))
            elif status is None and row is not None:
                self.flag(1, "scheduled-without-status", subject, f"listed by JobService (run_after_time "
                          f"{row.data.run_after_time - int(obs.at):+d} ms from now, retried={row.data.retried}) "
                          f"but has no status" + self._results_text(obs, job_id) + self._history_text(job_id),
                          job_id)
        elif status is None:  # statuses are judged in _check_statuses
            if row is not None:
                self.flag(5, "row-left-behind", subject, f"no status, but its job row is still listed (run_after_time "
                          f"{row.data.run_after_time}, retried={row.data.retried})" + self._results_text(obs, job_id),
                          job_id)
            elif not finals and not (exp.deleted or exp.worker_deleted or exp.lost_ok):
                self.flag(1, "vanished", subject, "no final result, no status, JobService.Find finds nothing"
                          + self._results_text(obs, job_id) + self._history_text(job_id))
        if not exp.periodic:
            self._check_finals(record, exp, results, finals, obs)
        self._check_waiters(record, exp, finals)

    def _spec_text(self, exp: Expectation) -> str:
        return "; worker definitions: " + " | ".join("DELETED" if s is None else s.describe() for s in exp.specs)

    def _check_finals(self, record: JobRecord, exp: Expectation, results: list[data.JobResult],
                      finals: list[data.JobResult], obs: Observation) -> None:
        subject = record.label()
        if len(finals) > 1 and not exp.rerun_ok:
            self.flag(4, "two-finals", subject, f"{len(finals)} final results" + self._results_text(obs, record.id)
                      + self._spec_text(exp))
        elif len(finals) == 1 and not exp.rerun_ok:
            later = [r for r in results if r.data.start_time > finals[0].data.end_time]
            if later:
                self.flag(4, "ran-after-final", subject, "attempts started after its final result"
                          + self._results_text(obs, record.id))
        retries = [r for r in results if status_name(r) == ERROR_AND_RETRY]
        if len(retries) > exp.max_retry and not exp.rerun_ok and not (len(finals) > 1):
            self.flag(4, "extra-retries", subject, f"{len(retries)} retried attempts, policy allows at most "
                      f"{exp.max_retry}" + self._results_text(obs, record.id))
        for final in finals:
            if status_name(final) not in exp.statuses:
                self.flag(1, "unexpected-status", subject, f"final status {status_name(final)}, expected one of "
                          f"{sorted(exp.statuses)}" + self._spec_text(exp))

    def _check_waiters(self, record: JobRecord, exp: Expectation, finals: list[data.JobResult]) -> None:
        final_ids = {r.id.value for r in finals}
        subject = record.label()
        calls = [("DIRECT reply", record.enqueue)] if record.direct and record.enqueue else []
        calls += [("Listen", c) for c in record.listens]
        for what, call in calls:
            if call.done_at is None:
                if exp.may_linger and what == "Listen":
                    continue
                if finals:  # without one, the job itself is reported (vanished / stuck)
                    self.flag(1, "waiter-unanswered", subject, f"{what} never answered although a final result "
                              f"({status_name(finals[0])}) is stored")
                continue
            if call.error is not None:
                interrupted = self.ledger.restarted_during(call.sent_at, call.done_at)
                refused = call.error.startswith("INVALID_ARGUMENT") and (
                    exp.worker_deleted or any(s is not None and s.response == "DIRECT" for s in exp.specs))
                # Its own timeout passed before the job had a final result: the right answer
                # (a far-ahead job waited on while a chain cycle kept the sequence from ever
                # quiescing, so the checker did not cancel the call first: seed 942268).
                timed_out = what == "Listen" and call.error.startswith("DEADLINE_EXCEEDED") and not any(
                    r.data.end_time <= call.done_at for r in finals)
                if not interrupted and not refused and not timed_out:
                    self.flag(1, "waiter-error", subject, f"{what} failed: {call.error}")
                continue
            notice = (call.result_status == CANCELLED and exp.deleted) or (
                call.result_status == FATAL_ERROR and exp.worker_deleted)
            if call.result_status == ERROR_AND_RETRY:
                self.flag(1, "waiter-got-non-final", subject, f"{what} returned ERROR_AND_RETRY")
            elif call.result_id not in final_ids and not notice and not exp.periodic:
                stored = ", ".join(status_name(r) for r in finals) or "none"
                self.flag(1, "waiter-result-not-stored", subject, f"{what} returned {call.result_status} "
                          f"(result {call.result_id}) but the stored final results are: {stored}")

    def _check_unaccepted(self, record: JobRecord, obs: Observation) -> None:
        """An enqueue without an id: rejected (fine), or a DIRECT call that never returned, or
        that gave up although its result was there."""
        call = record.enqueue
        if call is None:
            return
        if call.error is not None and call.error.startswith("DEADLINE_EXCEEDED"):
            # A DIRECT call may time out when its job waits too long (documented), but not when
            # the job had long finished: then the result was lost on its way to the caller.
            match = _JOB_IN_MESSAGE.search(call.error)
            job_id = int(match.group(1)) if match else 0
            # "Long" is judged against the server's own deadline (it started waiting after the
            # call was sent), not against when the answer reached us: on a loaded machine the
            # answer can trail the deadline by seconds (the delete of the abandoned job, then
            # this process's own lag), and a job that ended right at the deadline is no loss.
            within = _WITHIN_IN_MESSAGE.search(call.error)
            deadline = call.sent_at + (int(within.group(1)) if within else 0) + DIRECT_WAIT_GRACE_S * 1000
            done = [r for r in obs.finals(job_id)
                    if call.done_at and r.data.end_time < min(call.done_at - 1000, deadline - 1000 - RECHECK_S * 1000)]
            if done:
                self.flag(1, "direct-result-lost", f"j{record.ref}({record.worker_sym} {record.action}) = job {job_id}",
                          f"the DIRECT enqueue answered '{call.error}', but the job had ended "
                          f"{status_name(done[0])} {int(call.done_at - done[0].data.end_time)} ms before")
            return
        if call.done_at is None:
            self.flag(1, "waiter-unanswered", f"j{record.ref}({record.worker_sym} {record.action} DIRECT)",
                      "the DIRECT enqueue never returned")
        elif call.error and call.error.startswith(("transport", "UNAVAILABLE", "UNKNOWN", "INTERNAL")):
            injected = self._injected(call.error)  # the storage failed on purpose: refusing is right
            if not injected and not self.ledger.restarted_during(call.sent_at, call.done_at):
                self.flag(1, "enqueue-failed", f"j{record.ref}({record.worker_sym} {record.action})",
                          f"enqueue failed without a restart: {call.error}")

    def _check_discovered(self, obs: Observation) -> None:
        """Jobs the test did not enqueue itself (next_workers jobs, enqueues whose reply was lost)."""
        known = self.ledger.by_id()
        killed = any(r.kill for r in self.ledger.restarts)
        for job_id, results in obs.results.items():
            if job_id in known:
                continue
            finals = obs.finals(job_id)
            worker = self.ledger.worker_ids().get(results[0].data.worker_id.value)
            periodic = worker is not None and any(s is not None and s.periodic_ms for s in worker.possible_specs(0))
            if len(finals) > 1 and not killed and not periodic:
                self.flag(4, "two-finals", f"job {job_id} (not enqueued by the test)",
                          f"{len(finals)} final results" + self._results_text(obs, job_id))
        self._check_ghosts(obs)
        for job_id, row in obs.rows.items():
            if job_id not in known and job_id not in obs.statuses and not self._may_linger(job_id, obs):
                self.flag(5, "row-left-behind", f"job {job_id} (not enqueued by the test)",
                          f"no status, but its job row is listed; worker {self._worker_text(row.data.worker_id.value)}",
                          job_id)

    def _check_ghosts(self, obs: Observation) -> None:
        """An enqueue the server refused with an error (not a broken connection) must leave no job."""
        known = self.ledger.by_id()
        unknown: dict[tuple[int, bytes], set[int]] = defaultdict(set)
        for job_id, results in obs.results.items():
            if job_id not in known:
                unknown[(results[0].data.worker_id.value, results[0].data.args)].add(job_id)
        for job_id, row in obs.rows.items():
            if job_id not in known:
                unknown[(row.data.worker_id.value, row.data.args)].add(job_id)
        for record in self.ledger.rejected:
            call = record.enqueue
            sleep_job = self.ledger.workers[record.worker_sym].versions[0].spec.runner == "sleep"
            if call is None or call.error is None or call.error.startswith(("transport", "DEADLINE_EXCEEDED")) \
                    or sleep_job:
                continue  # a lost connection may have accepted it; a timed-out DIRECT job is ended by the
                # server in its own time; sleep jobs' args are not unique
            if self.ledger.restarted_during(call.sent_at, call.done_at):
                continue
            for job_id in sorted(unknown.get((record.worker_id, record.args), ())):
                self.flag(1, "ghost-job", f"j{record.ref}({record.worker_sym} {record.action}) = job {job_id}",
                          f"Enqueue answered '{call.error}', yet the job exists"
                          + self._results_text(obs, job_id)
                          + (f"; status {obs.statuses[job_id]}" if job_id in obs.statuses else ""))

    def _check_chains(self, obs: Observation) -> None:
        """A successful job whose worker certainly chains starts one job per next worker."""
        by_args: dict[bytes, set[int]] = defaultdict(set)
        for job_id, results in obs.results.items():
            by_args[results[0].data.args].add(job_id)
        disturbed = bool(self.ledger.restarts or self.ledger.faults)
        for record in self.ledger.jobs.values():
            if record.id is None or record.child_args is None:
                continue
            finals = obs.finals(record.id)
            if len(finals) != 1 or status_name(finals[0]) != "SUCCESS":
                continue
            exp = expectation(self.ledger, record)
            children = by_args.get(record.child_args, set())
            targets = [set(s.next_workers) if s is not None else None for s in exp.specs]
            if len(children) > max((len(t) for t in targets if t), default=0) and not exp.rerun_ok:
                self.flag(4, "chain-twice", record.label(), f"{len(children)} next_workers jobs for one success")
            certain = targets and all(t for t in targets) and len({frozenset(t) for t in targets}) == 1
            if not certain or disturbed:
                continue
            next_models = [self.ledger.workers[s] for s in targets[0]]
            if any(m.id is None or any(v.spec is None for v in m.versions) for m in next_models):
                continue
            if not children:
                self.flag(1, "chain-missing", record.label(), f"succeeded but no job of next worker(s) "
                          f"{', '.join(sorted(targets[0]))} ran")

    def _check_uniq_conflicts(self, obs: Observation) -> None:
        """An ALREADY_EXISTS must name a holder that was not known finished when asked."""
        known = self.ledger.by_id()
        for record, holder_id in self.ledger.uniq_conflicts:
            holder = known.get(holder_id)
            if holder is None or holder.final_seen_at is None or holder.final_seen_at >= record.sent_at:
                continue
            exp = expectation(self.ledger, holder)
            if exp.periodic or exp.rerun_ok:
                continue  # a periodic job keeps its key across runs; a killed one may run (and hold it) again
            self.flag(3, "uniq-held-by-finished", f"j{record.ref} uniq={record.uniq}",
                      f"rejected as ALREADY_EXISTS, held by {holder.label()} whose final result its waiter had "
                      f"received {int(record.sent_at - holder.final_seen_at)} ms before")

    async def _late_listens(self, obs: Observation) -> None:
        """A Listen after the fact returns the stored final result at once."""
        current: dict[int, data.Worker | None] = {}
        for record in self.ledger.jobs.values():
            if record.id is None or record.worker_id in current:
                continue
            found = await self.driver.call(lambda c, w=record.worker_id: c.worker.find(
                data.WorkerId(value=w), timeout=CALL_TIMEOUT_S))
            current[record.worker_id] = found.data
        for record in self.ledger.jobs.values():
            worker = current.get(record.worker_id)
            if record.id is None or worker is None or worker.data.response_type == data.ResponseType.DIRECT:
                continue
            if expectation(self.ledger, record).periodic:
                continue  # a periodic job's latest result moves on with every run
            results = obs.results.get(record.id, [])
            finals = obs.finals(record.id)
            if len(finals) != 1 or results[-1].id.value != finals[0].id.value:
                continue
            request = svc.ListenRequest(job_id=data.JobId(value=record.id), worker_id=data.WorkerId(
                value=record.worker_id), timeout=3000)
            try:
                answer = await self.driver.call(lambda c, r=request: c.job_result.listen(r, timeout=CALL_TIMEOUT_S))
            except Exception as e:
                self.flag(1, "late-listen", record.label(), f"Listen after the result was stored failed: "
                          f"{describe_error(e)}")
                continue
            if answer.id.value != finals[0].id.value:
                now_stored = await self.driver.rpc.collect(lambda c, j=record.id: c.job_result.find_list_by_job_id(
                    svc.FindListByJobIdRequest(job_id=data.JobId(value=j)), timeout=CALL_TIMEOUT_S))
                ran_again = answer.id.value in {r.id.value for r in now_stored}
                self.flag(4 if ran_again else 1, "ran-after-final" if ran_again else "late-listen", record.label(),
                          f"Listen returned {status_name(answer)} (result {answer.id.value}), not the final "
                          f"{status_name(finals[0])} stored at quiescence; "
                          + (f"the job ran again after quiescence: now {len(now_stored)} stored results"
                             if ran_again else "that result is not stored"))

    # --- uniq keys and cleanup ---------------------------------------------------------------
    async def probe_uniq_keys_and_clean_up(self, obs: Observation) -> None:
        """Invariant 3 by trying the keys again; then delete what this sequence left and check
        that deleting frees everything."""
        probe = await self._probe_worker()
        keys = sorted({r.uniq for r in list(self.ledger.jobs.values()) + self.ledger.rejected if r.uniq})
        holders: dict[str, list[int]] = defaultdict(list)
        for record in self.ledger.jobs.values():
            if record.uniq and record.id is not None and (record.id in obs.statuses or record.id in obs.rows):
                holders[record.uniq].append(record.id)
        for key in keys:
            # Looked at again now: a job that may linger when observed (its worker may have been
            # periodic) can still end on its own before the probe, freeing its key rightly.
            live = [h for h in holders.get(key, []) if await self._alive(h)]
            await self._probe(probe, key, live, "", obs)
        # Delete everything still alive, then every key must be free and every trace gone.
        alive = []
        delete_errors: dict[int, str] = {}
        for job_id in sorted(set(obs.statuses) | set(obs.rows)):
            if await self._find(job_id) is not None:  # status-only ghosts are already reported
                alive.append(job_id)
            if (error := await self._delete(job_id)) is not None:
                delete_errors[job_id] = error
        for job_id in alive:
            # A running job is cancelled asynchronously (it reports CANCELLED itself): give it time.
            with trio.move_on_after(DELETE_SETTLE_S):
                while True:
                    status = await self.driver.call(lambda c, j=job_id: c.job_status.find(data.JobId(value=j),
                                                                                          timeout=CALL_TIMEOUT_S))
                    job = await self._find(job_id)
                    if status.status is None and job is None:
                        break
                    await trio.sleep(POLL_S)
            if status.status is not None or job is not None:
                self.flag(2 if job is None else 5, "survives-delete", self._subject(job_id),
                          f"{DELETE_SETTLE_S:.0f} s after JobService.Delete "
                          f"({delete_errors.get(job_id, 'which answered')}): status "
                          f"{status.status and data.JobStatus(status.status).name}, "
                          f"Find {'finds it' if job else 'finds nothing'}" + self._history_text(job_id))
        for key in sorted(holders):
            await self._probe(probe, key, [], " after its holder was deleted", obs)
        await self.driver.call(lambda c: c.worker.delete(data.WorkerId(value=probe), timeout=CALL_TIMEOUT_S))
        for worker in self.ledger.workers.values():
            if worker.id is not None:
                await self.driver.call(lambda c, w=worker.id: c.worker.delete(data.WorkerId(value=w),
                                                                              timeout=CALL_TIMEOUT_S))

    async def _probe_worker(self) -> int:
        wd = data.WorkerData(name=f"inv-{self.driver.nonce}-probe", runner_id=data.RunnerId(value=1),
                             runner_settings=bytes(runner_pb.CommandRunnerSettings(name="true")),
                             response_type=data.ResponseType.NO_RESULT, store_success=True, store_failure=True)
        return (await self.driver.call(lambda c: c.worker.create(wd, timeout=CALL_TIMEOUT_S))).id.value

    async def _probe(self, probe: int, key: str, live_holders: list[int], when: str, obs: Observation) -> None:
        request = svc.JobRequest(worker_id=data.WorkerId(value=probe), uniq_key=key,
                                 args=bytes(runner_pb.CommandArgs()), run_after_time=int(now_ms()) + FAR_MS)
        # Scalable after a SIGKILL: a key taken by an enqueue that died before placing its job
        # is freed by the server's orphan sweep, one grace period later (not at once).
        sweep_deadline = trio.current_time() + (ORPHAN_SWEEP_S if self.ledger.mode == "scalable" and any(
            r.kill for r in self.ledger.restarts) else 0)
        while True:
            if await self._probe_once(probe, key, live_holders, when, request, obs,
                                      last=trio.current_time() >= sweep_deadline):
                return
            await trio.sleep(1.0)

    async def _probe_once(self, probe: int, key: str, live_holders: list[int], when: str,
                          request: svc.JobRequest, obs: Observation, *, last: bool) -> bool:
        """One probe; False when the key is held by a gone job and `last` is not set (look again)."""
        try:
            reply = await self.driver.call(lambda c: c.job.enqueue(request, timeout=CALL_TIMEOUT_S))
        except GRPCError as e:
            if self._injected(e.message or ""):  # a fault the sequence armed and never used up
                return False if not last else await self._probe_once(probe, key, live_holders, when, request,
                                                                      obs, last=True)
            if e.status != Status.ALREADY_EXISTS or live_holders:
                if e.status != Status.ALREADY_EXISTS:
                    self.flag(3, "uniq-probe-failed", f"uniq={key}", f"probe enqueue failed: {describe_error(e)}")
                return True
            match = HOLDER.search(e.message or "")
            holder = int(match.group(1)) if match else 0
            status = await self.driver.call(lambda c: c.job_status.find(data.JobId(value=holder),
                                                                        timeout=CALL_TIMEOUT_S))
            job = await self._find(holder) if holder else None
            if status.status is None and job is None:
                if not last:
                    return False
                self.flag(3, "uniq-held-by-finished", f"uniq={key}",
                          f"still taken{when} by {self._subject(holder) if holder else '?'}, which has no status and "
                          f"no job (finished or gone); the server said: {e.message}")
            return True
        await self._delete(reply.id.value)
        # Alive before the probe and still after it: it held no key all along (one that ended
        # in between freed its key rightly).
        live_holders = [h for h in live_holders if await self._alive(h)]
        if live_holders:
            self.flag(3, "uniq-not-held", f"uniq={key}", f"a new job got the key while "
                      f"{', '.join(self._holder_text(obs, h) for h in live_holders)} still waits with it")
        return True

    async def _alive(self, job_id: int) -> bool:
        """Whether the job still has a status or can be found (it has not ended)."""
        status = await self.driver.call(lambda c: c.job_status.find(data.JobId(value=job_id), timeout=CALL_TIMEOUT_S))
        return status.status is not None or await self._find(job_id) is not None

    def _holder_text(self, obs: Observation, job_id: int) -> str:
        """A job seen alive (status or row) as the checker saw it, for a uniq_key report."""
        row, t0 = obs.rows.get(job_id), self._t0(obs)
        seen = [f"status {obs.statuses[job_id]}" if job_id in obs.statuses else "no status"]
        if row is None:
            seen.append("no row")
        else:
            claim = row.data.grabbed_until_time or 0
            seen.append(f"a row due at +{row.data.run_after_time - t0}ms, retried {row.data.retried}"
                        + (f", claimed until +{claim - t0}ms" if claim else ", unclaimed"))
        return f"{self._subject(job_id)} ({', '.join(seen)} when observed{self._results_text(obs, job_id)}" \
               f"{self._history_text(job_id)})"

    async def _delete(self, job_id: int) -> str | None:
        """JobService.Delete; the error it answered, if any (judged by what remains after it)."""
        try:
            await self.driver.call(lambda c: c.job.delete(data.JobId(value=job_id), timeout=CALL_TIMEOUT_S))
        except GRPCError as e:
            return f"which failed: {describe_error(e)}"
        return None
