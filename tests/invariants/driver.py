"""Runs a generated sequence against the live server, recording everything in the ledger.

Lanes are trio tasks running at once, so RPCs race on the server. Waiting calls — DIRECT
enqueues and Listens — run in a separate nursery that outlives the lanes, so they can wait
for their results while the operations go on; the checker cancels whatever is still waiting
only after it has looked at the server.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import trio
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from tests.invariants.model import (
    ERROR_AND_RETRY,
    Call,
    FaultRecord,
    JobRecord,
    Ledger,
    Restart,
    WorkerModel,
    WorkerVersion,
    now_ms,
)
from tests.invariants.ops import (
    FAR_MS,
    HANG_TIMEOUT_MS,
    JOB_TIMEOUT_MS,
    CreateWorker,
    DeleteJob,
    DeleteWorker,
    Enqueue,
    Fault,
    Op,
    Sequence,
    UpdateWorker,
    WorkerSpec,
)
from tests.invariants.ops import Restart as RestartOp
from tests.invariants.rpc import CALL_TIMEOUT_S, Rpc
from tests.invariants.server import InvariantServer

COMMAND_RUNNER_ID = 1
# Answers that do not say the change was refused: the server may have made it before it failed
# or went away (seed 629097: a worker Delete answered UNAVAILABLE by a stopping server had deleted
# the worker, and its jobs ended as a deleted worker's do).
_AMBIGUOUS = {Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED, Status.UNKNOWN, Status.INTERNAL, Status.CANCELLED}


def _change_outcome(error: Exception) -> bool | None:
    """A failed worker change: refused (False) only when the server said so; else unknown."""
    return False if isinstance(error, GRPCError) and error.status not in _AMBIGUOUS else None
WAIT_CALL_TIMEOUT_S = 120.0  # DIRECT / Listen: the checker cancels them long before this
HOLDER = re.compile(r"taken by job (\d+)")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def faulty_args(action: str, arg: bytes) -> bytes:
    """`faulty.FaultyArgs{action, arg}` in protobuf wire format (two length-delimited fields)."""
    a = action.encode()
    return b"\x0a" + _varint(len(a)) + a + b"\x12" + _varint(len(arg)) + arg


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, GRPCError):
        return f"{exc.status.name}: {exc.message}"
    return f"transport: {type(exc).__name__}: {exc}"


def status_name(result: data.JobResult) -> str:
    return data.ResultStatus(result.data.status).name


class Driver:
    """Executes one sequence; the ledger is its record of everything it did and saw."""

    def __init__(self, seq: Sequence, server: InvariantServer, rpc: Rpc, mode: str, nonce: str) -> None:
        self.seq = seq
        self.server = server
        self.rpc = rpc
        self.nonce = nonce
        self.ledger = Ledger(seed=seq.seed, mode=mode, id_floor=int(time.time() * 1000) << 22)
        self.faulty_runner_id = 0
        self.waiters: trio.Nursery | None = None
        self._restarting = trio.Lock()

    # --- helpers -------------------------------------------------------------------------
    async def call(self, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        return await self.rpc.call(fn)

    def _worker_data(self, model: WorkerModel, spec: WorkerSpec) -> data.WorkerData:
        if spec.runner == "faulty":
            runner_id, settings = self.faulty_runner_id, b""  # FaultySettings{} (fail_load off)
        else:
            runner_id, settings = COMMAND_RUNNER_ID, bytes(runner_pb.CommandRunnerSettings(name=spec.runner))
        retry = None
        if spec.retry is not None:
            retry = data.RetryPolicy(type=data.RetryType.CONSTANT, interval=spec.retry[0], max_retry=spec.retry[1],
                                     basis=1.0)
        ids = {w.sym: w.id for w in self.ledger.workers.values() if w.id is not None}
        return data.WorkerData(
            name=model.name,
            runner_id=data.RunnerId(value=runner_id),
            runner_settings=settings,
            retry_policy=retry,
            periodic_interval=spec.periodic_ms,
            channel=spec.channel,
            queue_type=data.QueueType[spec.queue],
            response_type=data.ResponseType[spec.response],
            store_success=True,
            store_failure=True,
            next_workers=[data.WorkerId(value=ids[s]) for s in spec.next_workers if s in ids],
        )

    def _as_sent(self, spec: WorkerSpec) -> WorkerSpec:
        """The definition as it is sent: next workers not created yet are left out (their ids
        are unknown), so the ledger must not expect chains into them (a create racing the
        update that names it: soak seed 67335 flagged chains the server was never asked for)."""
        created = {w.sym for w in self.ledger.workers.values() if w.id is not None}
        return replace(spec, next_workers=tuple(s for s in spec.next_workers if s in created))

    def _current_spec(self, sym: str) -> WorkerSpec | None:
        """The definition last sent for a worker (the test's intent; the server may lag)."""
        model = self.ledger.workers.get(sym)
        return model.versions[-1].spec if model is not None and model.versions else None

    # --- the run ---------------------------------------------------------------------------
    async def setup(self) -> None:
        runners = await self.rpc.collect(lambda c: c.runner.find_list(svc.FindListRequest()))
        faulty = [r for r in runners if r.data.name == "faulty"]
        if not faulty:
            raise RuntimeError("the faulty test plugin is not loaded (PLUGINS_RUNNER_DIR)")
        self.faulty_runner_id = faulty[0].id.value
        for op in self.seq.setup:
            await self.run_op(op)

    async def run_lanes(self) -> None:
        async with trio.open_nursery() as lanes:
            for lane in range(self.seq.lanes):
                lanes.start_soon(self._lane, lane)

    async def _lane(self, lane: int) -> None:
        for step in self.seq.lane_steps(lane):
            if step.delay_ms:
                await trio.sleep(step.delay_ms / 1000)
            await self.run_op(step.op)

    async def run_op(self, op: Op) -> None:
        handler = {
            CreateWorker: self._create_worker,
            UpdateWorker: self._update_worker,
            DeleteWorker: self._delete_worker,
            Enqueue: self._enqueue,
            DeleteJob: self._delete_job,
            RestartOp: self._restart,
            Fault: self._fault,
        }[type(op)]
        done = await handler(op)
        if done is False:
            self.ledger.skipped.append(op.describe())
        else:
            self.ledger.operations_done += 1

    # --- workers ---------------------------------------------------------------------------
    async def _create_worker(self, op: CreateWorker) -> bool:
        model = self.ledger.workers.setdefault(op.sym, WorkerModel(op.sym, f"inv-{self.nonce}-{op.sym}"))
        spec = self._as_sent(op.spec)
        version = WorkerVersion(spec, now_ms())
        model.versions.append(version)
        wd = self._worker_data(model, spec)
        try:
            reply = await self.call(lambda c: c.worker.create(wd, timeout=CALL_TIMEOUT_S))
        except Exception as e:
            version.ok = _change_outcome(e)
            version.error = f"{type(e).__name__}: {e}"
            return True
        version.done_at, version.ok = now_ms(), True
        model.id = reply.id.value
        return True

    async def _update_worker(self, op: UpdateWorker) -> bool:
        model = self.ledger.workers.get(op.sym)
        if model is None or model.id is None:
            return False
        spec = self._as_sent(op.spec)
        version = WorkerVersion(spec, now_ms())
        model.versions.append(version)
        worker = data.Worker(id=data.WorkerId(value=model.id), data=self._worker_data(model, spec))
        try:
            await self.call(lambda c: c.worker.update(worker, timeout=CALL_TIMEOUT_S))
        except Exception as e:
            version.ok = _change_outcome(e)
            version.error = f"{type(e).__name__}: {e}"
            return True
        version.done_at, version.ok = now_ms(), True
        return True

    async def _delete_worker(self, op: DeleteWorker) -> bool:
        model = self.ledger.workers.get(op.sym)
        if model is None or model.id is None:
            return False
        version = WorkerVersion(None, now_ms())
        model.versions.append(version)
        worker_id = data.WorkerId(value=model.id)
        try:
            await self.call(lambda c: c.worker.delete(worker_id, timeout=CALL_TIMEOUT_S))
        except Exception as e:
            version.ok = _change_outcome(e)
            version.error = f"{type(e).__name__}: {e}"
            return True
        version.done_at, version.ok = now_ms(), True
        return True

    # --- jobs ------------------------------------------------------------------------------
    def _job_args(self, op: Enqueue, spec: WorkerSpec) -> tuple[bytes, bytes | None]:
        token = f"{self.nonce}-j{op.ref}".encode()
        if spec.runner == "faulty":
            if op.action == "ok":
                child = faulty_args("ok", token + b"-child")  # ASCII, so a valid proto string
                return faulty_args("ok", child), child
            return faulty_args(op.action, token), None
        if spec.runner == "sleep":
            return bytes(runner_pb.CommandArgs(args=[op.sleep_s])), None
        return bytes(runner_pb.CommandArgs(args=[token.decode()])), None

    async def _enqueue(self, op: Enqueue) -> bool:
        model = self.ledger.workers.get(op.sym)
        spec = self._current_spec(op.sym)
        if model is None or model.id is None or spec is None:
            return False
        args, child = self._job_args(op, spec)
        sent = now_ms()
        run_after = {"now": 0, "soon": int(sent) + op.soon_ms, "far": int(sent) + FAR_MS}[op.when]
        record = JobRecord(ref=op.ref, worker_sym=op.sym, worker_id=model.id, action=op.action, when=op.when,
                           uniq=op.uniq and f"{self.nonce}-{op.uniq}", args=args, child_args=child, sent_at=sent,
                           run_after_time=run_after)
        self.ledger.jobs[op.ref] = record
        request = svc.JobRequest(
            worker_id=data.WorkerId(value=model.id), args=args, uniq_key=record.uniq,
            run_after_time=run_after or None, priority=data.Priority[op.priority],
            timeout=HANG_TIMEOUT_MS if op.action == "hang" else JOB_TIMEOUT_MS,
        )
        if spec.response == "DIRECT":  # waits for the result: do not hold up the lane
            assert self.waiters is not None
            self.waiters.start_soon(self._send_enqueue, record, request, op.listen)
        else:
            await self._send_enqueue(record, request, op.listen)
        return True

    async def _send_enqueue(self, record: JobRecord, request: svc.JobRequest, listen: bool) -> None:
        call = record.enqueue = Call(sent_at=record.sent_at)
        try:
            reply = await self.call(lambda c: c.job.enqueue(request, timeout=WAIT_CALL_TIMEOUT_S))
        except Exception as e:
            call.done_at, call.error = now_ms(), describe_error(e)
            self.ledger.rejected.append(record)
            if isinstance(e, GRPCError) and e.status == Status.ALREADY_EXISTS:
                holder = HOLDER.search(e.message or "")
                if holder:
                    self.ledger.uniq_conflicts.append((record, int(holder.group(1))))
            return
        call.done_at = now_ms()
        record.id = reply.id.value
        if reply.result is not None:
            record.direct = True
            call.result_status, call.result_id = status_name(reply.result), reply.result.id.value
            if call.result_status != ERROR_AND_RETRY:
                record.final_seen_at = call.done_at
        elif listen:
            assert self.waiters is not None
            self.waiters.start_soon(self._listen, record)

    async def _listen(self, record: JobRecord) -> None:
        call = Call(sent_at=now_ms())
        record.listens.append(call)
        request = svc.ListenRequest(job_id=data.JobId(value=record.id), worker_id=data.WorkerId(value=record.worker_id),
                                    timeout=int(WAIT_CALL_TIMEOUT_S * 1000))
        try:
            result = await self.call(lambda c: c.job_result.listen(request, timeout=WAIT_CALL_TIMEOUT_S))
        except Exception as e:
            call.done_at, call.error = now_ms(), describe_error(e)
            return
        call.done_at = now_ms()
        call.result_status, call.result_id = status_name(result), result.id.value
        if call.result_status != ERROR_AND_RETRY and record.final_seen_at is None:
            record.final_seen_at = call.done_at

    async def _delete_job(self, op: DeleteJob) -> bool:
        if op.ref is not None:
            record = self.ledger.jobs.get(op.ref)
            if record is None or record.id is None:
                return False
            job_id = record.id
        else:
            job_id = await self._pick_live_job(op.pick)
            if job_id is None:
                return False
        call = Call(sent_at=now_ms())
        record = self.ledger.by_id().get(job_id)
        if record is not None:
            record.deletes.append(call)
        else:
            self.ledger.other_deletes.setdefault(job_id, []).append(call)
        try:
            reply = await self.call(lambda c: c.job.delete(data.JobId(value=job_id), timeout=CALL_TIMEOUT_S))
        except Exception as e:
            call.done_at, call.error = now_ms(), describe_error(e)
            return True
        call.done_at, call.detail = now_ms(), f"is_success={reply.is_success}"
        return True

    async def _pick_live_job(self, pick: int) -> int | None:
        """One job of this sequence that the server lists as alive (DIRECT ones included, whose
        id the test cannot know before they finish)."""
        try:
            statuses = await self.rpc.collect(lambda c: c.job_status.find_all(data.Empty(), timeout=CALL_TIMEOUT_S))
        except Exception:
            return None
        known = self.ledger.by_id()
        mine = set(self.ledger.worker_ids())
        candidates = []
        for status in sorted(statuses, key=lambda s: s.id.value):
            job_id = status.id.value
            if job_id < self.ledger.id_floor:
                continue
            if job_id in known:
                candidates.append(job_id)
                continue
            try:
                found = await self.call(lambda c, j=job_id: c.job.find(data.JobId(value=j), timeout=CALL_TIMEOUT_S))
            except Exception:
                continue
            if found.data is not None and found.data.data.worker_id.value in mine:
                candidates.append(job_id)
        return candidates[pick % len(candidates)] if candidates else None

    # --- the server itself -----------------------------------------------------------------
    async def _restart(self, op: RestartOp) -> bool:
        async with self._restarting:  # two lanes must not restart the process at once
            restart = Restart(kill=op.kill, start=now_ms())
            self.ledger.restarts.append(restart)
            code = await self.server.restart(kill=op.kill)
            restart.end = now_ms()
        if not op.kill and code != 0:
            self.ledger.shutdown_errors.append(f"SIGTERM: server exited with {code}")
        return True

    async def _fault(self, op: Fault) -> bool:
        async with self._restarting:  # signal the process that is up, not one being replaced
            armed = await self.server.arm_faults(list(op.ops))
        self.ledger.faults.append(FaultRecord(op.ops, now_ms(), armed))
        return armed
