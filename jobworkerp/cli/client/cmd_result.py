"""`job-result find | listen | listen-stream | list | list-by-job-id | delete | count`.

Output items are decoded with the runner's result_output_proto when it has one (shown as JSON),
else shown as text; bytes that are not UTF-8 are shown as base64, never mangled.
"""

from __future__ import annotations

from jobworkerp.cli.client import present
from jobworkerp.cli.client.context import Context
from jobworkerp.cli.client.errors import NotFoundError
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc

LIST_COLUMNS = ("id", "job_id", "worker_name", "status", "output", "start_time", "end_time", "retried")


def _worker_oneof(request: svc.ListenRequest | svc.ListenStreamByWorkerRequest, ref: int | str) -> None:
    if isinstance(ref, str):
        request.worker_name = ref
    else:
        request.worker_id = data.WorkerId(value=ref)


async def find(ctx: Context) -> None:
    found = (await ctx.services.job_result.find(data.JobResultId(value=ctx.args.id))).data
    if found is None:
        raise NotFoundError(f"job result {ctx.args.id} not found")
    ctx.out.record(await present.job_result(found, ctx.lookup), "job result")


async def listen(ctx: Context) -> None:
    a = ctx.args
    request = svc.ListenRequest(job_id=data.JobId(value=a.job_id), timeout=a.listen_timeout)
    _worker_oneof(request, a.worker)
    result = await ctx.services.job_result.listen(request)
    ctx.out.record(await present.job_result(result, ctx.lookup), "job result")


async def listen_stream(ctx: Context) -> None:
    if ctx.args.job_id is not None:  # one job's output as it is produced, then its result
        from jobworkerp.cli.client.cmd_stream import listen_job

        await listen_job(ctx)
        return
    request = svc.ListenStreamByWorkerRequest()
    _worker_oneof(request, ctx.args.worker)
    async for result in ctx.services.job_result.listen_stream_by_worker(request):
        ctx.out.record(await present.job_result(result, ctx.lookup), "job result")


async def _print_list(ctx: Context, results: list[data.JobResult], title: str) -> None:
    ctx.out.records([await present.job_result(r, ctx.lookup) for r in results], title, LIST_COLUMNS)


async def list_(ctx: Context) -> None:
    request = svc.FindListRequest(limit=ctx.args.limit, offset=ctx.args.offset)
    await _print_list(ctx, [r async for r in ctx.services.job_result.find_list(request)], "job results")


async def list_by_job_id(ctx: Context) -> None:
    request = svc.FindListByJobIdRequest(job_id=data.JobId(value=ctx.args.job_id))
    results = [r async for r in ctx.services.job_result.find_list_by_job_id(request)]
    await _print_list(ctx, results, f"results of job {ctx.args.job_id}")


async def delete(ctx: Context) -> int:
    ok = (await ctx.services.job_result.delete(data.JobResultId(value=ctx.args.id))).is_success
    ctx.out.value("is_success", ok, f"job result {ctx.args.id} deleted")
    return 0 if ok else 1


async def count(ctx: Context) -> None:
    ctx.out.value("total", (await ctx.services.job_result.count(svc.CountCondition())).total, "job results")
