"""`job-status find | list`: where unfinished jobs are (PENDING / RUNNING / WAIT_RESULT)."""

from __future__ import annotations

from jobworkerp.cli.client import present
from jobworkerp.cli.client.context import Context
from jobworkerp.cli.client.errors import NotFoundError
from jobworkerp.proto.jobworkerp import data


async def find(ctx: Context) -> None:
    status = (await ctx.services.job_status.find(data.JobId(value=ctx.args.id))).status
    if status is None:
        raise NotFoundError(f"job {ctx.args.id} has no status (finished, deleted or never enqueued)")
    ctx.out.record({"job_id": str(ctx.args.id), "status": status.name}, "job status")


async def list_(ctx: Context) -> None:
    rows = [present.job_status(s) async for s in ctx.services.job_status.find_all(data.Empty())]
    ctx.out.records(rows, "job statuses", ("job_id", "status"))
