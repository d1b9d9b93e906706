"""`job enqueue-for-stream` and `job-result listen-stream --job-id`: a job's output as it is
produced (JobStreamService), then its result.

Chunks are printed the moment they arrive (stdout flushed per chunk), so the output of a COMMAND
reads as if it ran here; the result follows as `job-result listen` prints it. With --json, one
line per item: `{"id": ...}` first (enqueue-for-stream), `{"data": ...}` per chunk, `{"dropped":
N}` where the server had no more of them, and the result's record last.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

from jobworkerp.cli.client import present
from jobworkerp.cli.client.cmd_job import job_request
from jobworkerp.cli.client.context import Context
from jobworkerp.proto.jobworkerp import data, ext


async def enqueue_for_stream(ctx: Context) -> None:
    _, request = await job_request(ctx)
    await _print(ctx, ctx.services.streams.enqueue_for_stream(request))


async def listen_job(ctx: Context) -> None:
    request = ext.ListenStreamRequest(job_id=data.JobId(value=ctx.args.job_id), timeout=ctx.args.listen_timeout)
    await _print(ctx, ctx.services.streams.listen_stream(request))


async def _print(ctx: Context, items: AsyncIterator[ext.JobOutputItem]) -> None:
    out = ctx.out
    async for item in items:
        if item.data is not None:
            out.chunk(item.data)
        elif item.dropped is not None:
            out.dropped(item.dropped)
        elif item.job_id is not None:
            if out.json_mode:
                out.record({"id": str(item.job_id.value)}, "job")
            else:
                print(f"job {item.job_id.value} enqueued; its output follows", file=sys.stderr, flush=True)
        elif item.end is not None:
            out.record(await present.job_result(item.end, ctx.lookup), "job result")
