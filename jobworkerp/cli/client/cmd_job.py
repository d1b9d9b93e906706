"""`job enqueue | find | list | delete | count` (`enqueue-for-stream`: cmd_stream.py).

Enqueue resolves the worker (id or name) first: its runner's args message is what `--args` is
parsed against, and an unknown worker is reported before anything is enqueued.
"""

from __future__ import annotations

from jobworkerp.cli.client import present
from jobworkerp.cli.client.context import Context
from jobworkerp.cli.client.errors import NotFoundError
from jobworkerp.client.protocodec import encode_input
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc

LIST_COLUMNS = ("id", "worker_id", "args", "priority", "run_after_time", "enqueue_time", "retried", "uniq_key")


async def job_request(ctx: Context) -> tuple[data.Worker, svc.JobRequest]:
    """The worker named by --worker and the JobRequest the enqueue options describe."""
    a = ctx.args
    worker = await ctx.lookup.require_worker(a.worker)
    assert worker.data is not None and worker.id is not None
    runner_id = worker.data.runner_id.value if worker.data.runner_id is not None else 0
    runner = await ctx.lookup.require_runner(runner_id)
    assert runner.data is not None
    args = encode_input(runner.data.job_args_proto, a.args, "--args") if a.args is not None else b""
    request = svc.JobRequest(
        args=args,
        uniq_key=a.uniq_key,
        run_after_time=a.run_after_time or None,
        priority=data.Priority[a.priority] if a.priority else None,
        timeout=a.job_timeout,
    )
    if isinstance(a.worker, str):
        request.worker_name = a.worker
    else:
        request.worker_id = data.WorkerId(value=a.worker)
    return worker, request


async def enqueue(ctx: Context) -> None:
    worker, request = await job_request(ctx)
    response = await ctx.services.job.enqueue(request)
    job_id = str(response.id.value) if response.id else None
    result = await present.job_result(response.result, ctx.lookup) if response.result is not None else None
    if ctx.out.json_mode:
        ctx.out.record({"id": job_id, "result": result}, "job")
        return
    ctx.out.record({"id": job_id, "worker": worker.data.name}, "job enqueued")
    if result is not None:
        ctx.out.record(result, "result")


async def find(ctx: Context) -> None:
    found = (await ctx.services.job.find(data.JobId(value=ctx.args.id))).data
    if found is None:
        raise NotFoundError(f"job {ctx.args.id} not found (only scheduled, periodic and backed-up jobs are stored)")
    ctx.out.record(await present.job(found, ctx.lookup), "job")


async def list_(ctx: Context) -> None:
    request = svc.FindListRequest(limit=ctx.args.limit, offset=ctx.args.offset)
    jobs = [j async for j in ctx.services.job.find_list(request)]
    ctx.out.records([await present.job(j, ctx.lookup) for j in jobs], "jobs", LIST_COLUMNS)


async def delete(ctx: Context) -> int:
    ok = (await ctx.services.job.delete(data.JobId(value=ctx.args.id))).is_success
    ctx.out.value("is_success", ok, f"job {ctx.args.id} deleted")
    return 0 if ok else 1


async def count(ctx: Context) -> None:
    ctx.out.value("total", (await ctx.services.job.count(svc.CountCondition())).total, "jobs")
