"""`worker create | find | find-by-name | list | update | delete | count`.

Settings are given as JSON and encoded with the runner's settings message; `update` fetches the
worker, changes only the options that were given and sends the whole definition back (the server's
Update replaces the full WorkerData).
"""

from __future__ import annotations

import argparse
from typing import Any

from jobworkerp.cli.client import present
from jobworkerp.cli.client.context import Context
from jobworkerp.cli.client.errors import NotFoundError
from jobworkerp.client.protocodec import encode_input
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc

LIST_COLUMNS = ("id", "name", "runner_name", "runner_settings", "response_type", "periodic_interval", "channel",
                "queue_type", "store_success", "store_failure")

_RETRY_DEFAULTS: dict[str, Any] = {"retry_type": "EXPONENTIAL", "retry_interval": 1000, "max_retry": 3,
                                   "max_interval": 0, "retry_basis": 2.0}
_RETRY_OPTIONS = tuple(_RETRY_DEFAULTS)


async def _encode_settings(ctx: Context, runner_id: int, settings: str) -> bytes:
    runner = await ctx.lookup.require_runner(runner_id)
    assert runner.data is not None
    return encode_input(runner.data.runner_settings_proto, settings, "--settings")


def _next_workers(groups: list[list[int]]) -> list[data.WorkerId]:
    return [data.WorkerId(value=i) for group in groups for i in group]


def _retry_policy(args: argparse.Namespace, current: data.RetryPolicy | None) -> data.RetryPolicy | None:
    """A policy only when asked for: given options over the current policy over the defaults."""
    if all(getattr(args, name) is None for name in _RETRY_OPTIONS):
        return current
    base: dict[str, Any] = {
        "retry_type": current.type.name, "retry_interval": current.interval, "max_retry": current.max_retry,
        "max_interval": current.max_interval, "retry_basis": current.basis,
    } if current is not None else dict(_RETRY_DEFAULTS)
    merged = {name: base[name] if getattr(args, name) is None else getattr(args, name) for name in _RETRY_OPTIONS}
    return data.RetryPolicy(type=data.RetryType[merged["retry_type"]], interval=merged["retry_interval"],
                            max_interval=merged["max_interval"], max_retry=merged["max_retry"],
                            basis=merged["retry_basis"])


async def create(ctx: Context) -> None:
    a = ctx.args
    definition = data.WorkerData(
        name=a.name,
        runner_id=data.RunnerId(value=a.runner_id),
        runner_settings=await _encode_settings(ctx, a.runner_id, a.settings),
        retry_policy=_retry_policy(a, None),
        periodic_interval=a.periodic,
        channel=a.channel or None,
        queue_type=data.QueueType[a.queue_type],
        response_type=data.ResponseType[a.response_type],
        store_success=a.store_success,
        store_failure=a.store_failure,
        next_workers=_next_workers(a.next_workers or []),
        use_static=a.use_static,
    )
    created = await ctx.services.worker.create(definition)
    ctx.out.record({"id": str(created.id.value) if created.id else None, "name": a.name}, "worker created")


async def _show(ctx: Context, worker: data.Worker | None, what: str) -> None:
    if worker is None:
        raise NotFoundError(f"{what} not found")
    ctx.lookup.remember_worker(worker)
    ctx.out.record(await present.worker(worker, ctx.lookup), "worker")


async def find(ctx: Context) -> None:
    found = (await ctx.services.worker.find(data.WorkerId(value=ctx.args.id))).data
    await _show(ctx, found, f"worker {ctx.args.id}")


async def find_by_name(ctx: Context) -> None:
    found = (await ctx.services.worker.find_by_name(svc.WorkerNameRequest(name=ctx.args.name))).data
    await _show(ctx, found, f"worker {ctx.args.name!r}")


async def list_(ctx: Context) -> None:
    request = svc.FindListRequest(limit=ctx.args.limit, offset=ctx.args.offset)
    workers = [w async for w in ctx.services.worker.find_list(request)]
    for w in workers:
        ctx.lookup.remember_worker(w)
    ctx.out.records([await present.worker(w, ctx.lookup) for w in workers], "workers", LIST_COLUMNS)


async def update(ctx: Context) -> int:
    a = ctx.args
    current = (await ctx.services.worker.find(data.WorkerId(value=a.id))).data
    if current is None or current.data is None:
        raise NotFoundError(f"worker {a.id} not found")
    d = current.data
    if a.name is not None:
        d.name = a.name
    if a.runner_id is not None:
        d.runner_id = data.RunnerId(value=a.runner_id)
    if a.settings is not None:
        if d.runner_id is None:
            raise NotFoundError(f"worker {a.id} has no runner; give --runner-id with --settings")
        d.runner_settings = await _encode_settings(ctx, d.runner_id.value, a.settings)
    if a.periodic is not None:
        d.periodic_interval = a.periodic
    if a.channel is not None:
        d.channel = a.channel or None
    if a.queue_type is not None:
        d.queue_type = data.QueueType[a.queue_type]
    if a.response_type is not None:
        d.response_type = data.ResponseType[a.response_type]
    for flag in ("store_success", "store_failure", "use_static"):
        if getattr(a, flag) is not None:
            setattr(d, flag, getattr(a, flag))
    if a.next_workers is not None:
        d.next_workers = _next_workers(a.next_workers)
    d.retry_policy = _retry_policy(a, d.retry_policy)
    ok = (await ctx.services.worker.update(data.Worker(id=data.WorkerId(value=a.id), data=d))).is_success
    ctx.out.record({"id": str(a.id), "is_success": ok}, "worker updated")
    return 0 if ok else 1


async def delete(ctx: Context) -> int:
    ok = (await ctx.services.worker.delete(data.WorkerId(value=ctx.args.id))).is_success
    ctx.out.value("is_success", ok, f"worker {ctx.args.id} deleted")
    return 0 if ok else 1


async def count(ctx: Context) -> None:
    ctx.out.value("total", (await ctx.services.worker.count(svc.CountCondition())).total, "workers")
