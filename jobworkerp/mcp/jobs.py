"""One tool call = one job: enqueue it, wait for its final result, report progress meanwhile,
and delete the job when the caller gives up.

How the result comes back depends on the worker's response type, as for `jobworkerp-client`:
- DIRECT: Enqueue itself answers with the result. A caller that goes away cancels the Enqueue
  call, and the server deletes a DIRECT job whose caller left (usecase/jobs.py `_wait_direct`).
- LISTEN_AFTER / NO_RESULT: Enqueue answers with the job id, then `JobResultService.Listen`
  waits for the result, in slices of the progress interval: between slices the job's status is
  read and reported as progress. A job that ended before Listen subscribed is found by Listen in
  storage when the worker stores results; when it does not (NO_RESULT without store flags, on
  Standalone's in-process bus), its status is gone while no result came: the call says so
  instead of waiting forever. When the caller gives up (or the wait fails), the job is deleted
  (JobService.Delete), under a shielded scope so that the cancellation that ended the wait does
  not also stop the delete.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc

if TYPE_CHECKING:
    from jobworkerp.client.connection import Services
    from jobworkerp.mcp.catalog import WorkerTool

log = logging.getLogger(__name__)

# A quick call made where a cancellation must not interrupt it (Enqueue, Delete): bounded, so a
# server that stopped answering cannot hold a cancelled call forever.
SHIELDED_CALL_LIMIT_S = 30.0

FIRST_SLICE_MS = 1000

Report = Callable[[float, str], Awaitable[None]]
"""Sends one progress notification: (elapsed seconds, message). A no-op without a progressToken."""


class ResultNotKept(Exception):
    """The job ended, but its result was neither published to this wait nor stored."""


def monotonic_report(report: Report) -> Report:
    """MCP wants every progress value larger than the one before; elapsed time on a coarse
    clock may repeat."""
    last = -1.0

    async def send(elapsed: float, message: str) -> None:
        nonlocal last
        last = max(elapsed, last + 0.001)
        await report(last, message)

    return send


async def run_job(services: Services, tool: WorkerTool, args: bytes, report: Report,
                  interval_s: float) -> tuple[int, data.JobResult]:
    """Run one job on `tool`'s worker; (job id, final result). gRPC errors propagate."""
    report = monotonic_report(report)
    if tool.response_type == data.ResponseType.DIRECT:
        return await _run_direct(services, tool, args, report, interval_s)
    return await _run_and_listen(services, tool, args, report, interval_s)


def _request(tool: WorkerTool, args: bytes) -> svc.JobRequest:
    return svc.JobRequest(worker_id=data.WorkerId(value=tool.worker.id.value), args=args)


async def _run_direct(services: Services, tool: WorkerTool, args: bytes, report: Report,
                      interval_s: float) -> tuple[int, data.JobResult]:
    start = anyio.current_time()

    async def tick() -> None:
        while True:
            await anyio.sleep(interval_s)
            elapsed = anyio.current_time() - start
            await report(elapsed, f"waiting for the job on DIRECT worker {tool.name} ({elapsed:.0f} s)")

    await report(0.0, f"job enqueued on DIRECT worker {tool.name}; it answers when the job ends")
    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        response = await services.job.enqueue(_request(tool, args))
        tg.cancel_scope.cancel()
    if response.result is None:  # a DIRECT Enqueue always carries the result; be explicit if not
        raise ResultNotKept(f"the server answered the DIRECT job {response.id.value} without its result")
    return response.id.value, response.result


async def _run_and_listen(services: Services, tool: WorkerTool, args: bytes, report: Report,
                          interval_s: float) -> tuple[int, data.JobResult]:
    # Shielded: a cancellation arriving while Enqueue is on its way would leave a job running that
    # no one knows the id of, so no one could delete it. The cancellation is seen right after.
    with anyio.CancelScope(shield=True), anyio.fail_after(SHIELDED_CALL_LIMIT_S):
        response = await services.job.enqueue(_request(tool, args))
    job_id = response.id.value
    try:
        await anyio.lowlevel.checkpoint_if_cancelled()
        await report(0.0, f"job {job_id} enqueued on worker {tool.name}")
        return job_id, await _wait(services, tool, job_id, report, interval_s)
    except ResultNotKept:
        raise  # the job has ended: nothing to delete
    except BaseException:  # cancelled, or the wait failed: a job whose result no one will get is not left
        await _delete_shielded(services, job_id)
        raise


async def _delete_shielded(services: Services, job_id: int) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(SHIELDED_CALL_LIMIT_S) as scope:
        try:
            deleted = (await services.job.delete(data.JobId(value=job_id))).is_success
            log.info("tool call ended early: job %s %s", job_id, "deleted" if deleted else "had already ended")
        except Exception as e:  # the caller is gone: log, nothing else can be told
            log.warning("tool call ended early: deleting job %s failed: %s", job_id, e)
    if scope.cancelled_caught:
        log.warning("tool call ended early: deleting job %s got no answer within %s s", job_id, SHIELDED_CALL_LIMIT_S)


async def _wait(services: Services, tool: WorkerTool, job_id: int, report: Report,
                interval_s: float) -> data.JobResult:
    start = anyio.current_time()
    slice_ms = max(1, int(interval_s * 1000))
    # The first slice is short: a quick NO_RESULT job whose result was not kept is told sooner.
    first_ms = min(slice_ms, FIRST_SLICE_MS)
    request = svc.ListenRequest(job_id=data.JobId(value=job_id), worker_id=data.WorkerId(value=tool.worker.id.value),
                                timeout=first_ms)
    while True:
        try:
            return await services.job_result.listen(request)
        except GRPCError as e:
            if e.status != Status.DEADLINE_EXCEEDED:
                raise
        status = (await services.job_status.find(data.JobId(value=job_id))).status
        if status is None:
            return await _ended_unheard(services, tool, job_id)
        elapsed = anyio.current_time() - start
        await report(elapsed, f"job {job_id} {status.name} ({elapsed:.0f} s)")
        request.timeout = slice_ms


async def _ended_unheard(services: Services, tool: WorkerTool, job_id: int) -> data.JobResult:
    """The job has no status (it ended) and no result reached the last Listen: a stored final
    result (it may have landed between that Listen and the status look-up), or ResultNotKept."""
    request = svc.FindListByJobIdRequest(job_id=data.JobId(value=job_id))
    stored = [r async for r in services.job_result.find_list_by_job_id(request)]
    final = [r for r in stored if r.data.status != data.ResultStatus.ERROR_AND_RETRY]
    if final:
        return final[0]  # the server lists a job's results newest first
    raise ResultNotKept(f"job {job_id} ended, but its result was not kept: worker {tool.name} "
                        f"({tool.response_type.name}) does not store results, and the job ended before "
                        "the call could listen for it")
