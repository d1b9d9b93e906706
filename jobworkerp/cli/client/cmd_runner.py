"""`runner find | list | delete | count`."""

from __future__ import annotations

from jobworkerp.cli.client import present
from jobworkerp.cli.client.context import Context
from jobworkerp.cli.client.errors import NotFoundError
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc

LIST_COLUMNS = ("id", "name", "runner_type", "settings_message", "args_message", "result_message")


async def find(ctx: Context) -> None:
    found = (await ctx.services.runner.find(data.RunnerId(value=ctx.args.id))).data
    if found is None:
        raise NotFoundError(f"runner {ctx.args.id} not found")
    ctx.out.record(present.runner(found), "runner")


async def list_(ctx: Context) -> None:
    request = svc.FindListRequest(limit=ctx.args.limit, offset=ctx.args.offset)
    runners = [present.runner(r) async for r in ctx.services.runner.find_list(request)]
    ctx.out.records(runners, "runners", LIST_COLUMNS)


async def delete(ctx: Context) -> int:
    ok = (await ctx.services.runner.delete(data.RunnerId(value=ctx.args.id))).is_success
    ctx.out.value("is_success", ok, f"runner {ctx.args.id} deleted")
    return 0 if ok else 1


async def count(ctx: Context) -> None:
    ctx.out.value("total", (await ctx.services.runner.count(svc.CountCondition())).total, "runners")
