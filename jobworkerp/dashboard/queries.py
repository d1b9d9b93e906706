"""Asyncio side of the dashboard: what each page asks of the public gRPC API.

Each function takes the stubs (`client.connection.Services`) and is run as one asyncio task
by `Api.run`. Values are decoded exactly as `jobworkerp-client` decodes them (`cli.client.lookup`
and `present`: runner protos compiled from their published text), so the dashboard and the CLI
show the same JSON for the same bytes.

Decoding compiles a runner's .proto text the first time it is met (protoc in-process, tens of
milliseconds, on the event loop: the CLI's codec captures protoc's stderr through the process's
file descriptor 2, so it cannot move to a thread), and keeps it for the process's life.

Every listing is bounded: a page of a FindList (limit/offset), at most STATUS_READ_MAX job
statuses, at most SCAN_MAX results read for one filtered page; nothing counts or lists a whole
table per page view.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobworkerp.cli.client import present
from jobworkerp.cli.client.lookup import Lookup
from jobworkerp.client.connection import Services
from jobworkerp.proto.jobworkerp import data, ext
from jobworkerp.proto.jobworkerp import service as svc

LIST_MAX = 1000  # the server's largest page (usecase/paging.py MAX_PAGE_SIZE)
WORKERS_MAX = 5000  # workers read for selects and the channel of each job
STATUS_READ_MAX = 5000  # job statuses read for one snapshot; more are reported as "at least"
FIND_CONCURRENCY = 16


async def runners(s: Services) -> list[data.Runner]:
    return [r async for r in s.runner.find_list(svc.FindListRequest(limit=LIST_MAX, offset=0))]


async def runner(s: Services, runner_id: int) -> data.Runner | None:
    return (await s.runner.find(data.RunnerId(value=runner_id))).data


async def workers_page(s: Services, limit: int, offset: int) -> tuple[list[present.Record], bool]:
    """One page of workers as records (settings decoded), and whether there is a next one."""
    rows = [w async for w in s.worker.find_list(svc.FindListRequest(limit=limit + 1, offset=offset))]
    lookup = Lookup(s)
    return [await present.worker(w, lookup) for w in rows[:limit]], len(rows) > limit


async def all_workers(s: Services) -> list[data.Worker]:
    """Every worker, up to WORKERS_MAX (page by page)."""
    found: list[data.Worker] = []
    while len(found) < WORKERS_MAX:
        page = [w async for w in s.worker.find_list(svc.FindListRequest(limit=LIST_MAX, offset=len(found)))]
        found.extend(page)
        if len(page) < LIST_MAX:
            break
    return found


async def worker(s: Services, worker_id: int) -> tuple[data.Worker | None, data.Runner | None, present.Record | None]:
    """A worker, its runner and its record (settings decoded), or Nones."""
    found = (await s.worker.find(data.WorkerId(value=worker_id))).data
    if found is None or found.data is None:
        return None, None, None
    lookup = Lookup(s)
    runner_id = found.data.runner_id.value if found.data.runner_id is not None else 0
    return found, await lookup.runner(runner_id) if runner_id else None, await present.worker(found, lookup)


async def create_worker(s: Services, worker_data: data.WorkerData) -> int:
    return (await s.worker.create(worker_data)).id.value


async def update_worker(s: Services, updated: data.Worker) -> bool:
    return (await s.worker.update(updated)).is_success


async def delete_worker(s: Services, worker_id: int) -> bool:
    return (await s.worker.delete(data.WorkerId(value=worker_id))).is_success


async def enqueue(s: Services, request: svc.JobRequest) -> tuple[int, present.Record | None]:
    """The new job's id, and its result as a record when the worker is DIRECT."""
    response = await s.job.enqueue(request, timeout=_direct_wait(request))
    record = await present.job_result(response.result, Lookup(s)) if response.result is not None else None
    return response.id.value, record


def _direct_wait(request: svc.JobRequest) -> float:
    """A DIRECT Enqueue answers when the job ends: wait for its timeout (plus a margin) at most,
    and for an hour when it has none (the page's request must end some time)."""
    return (request.timeout or 3_600_000) / 1000 + 10


async def delete_job(s: Services, job_id: int) -> bool:
    return (await s.job.delete(data.JobId(value=job_id))).is_success


async def statuses(s: Services) -> tuple[list[tuple[int, data.JobStatus]], bool]:
    """(job id, status) of jobs in flight, newest first: at most STATUS_READ_MAX, and whether
    there were more (the rest of the stream is not read)."""
    found: list[tuple[int, data.JobStatus]] = []
    truncated = False
    async for item in s.job_status.find_all(data.Empty()):
        if len(found) >= STATUS_READ_MAX:
            truncated = True
            break
        found.append((item.id.value, item.status))
    found.sort(key=lambda pair: pair[0], reverse=True)
    return found, truncated


async def rdb_jobs(s: Services) -> list[data.Job]:
    """The first page of stored jobs (scheduled, periodic and backed-up ones)."""
    return [j async for j in s.job.find_list(svc.FindListRequest(limit=LIST_MAX, offset=0))]


async def find_jobs(s: Services, ids: list[int]) -> dict[int, data.Job | None]:
    """Find each job (queued, scheduled or running), a few at a time."""
    gate = asyncio.Semaphore(FIND_CONCURRENCY)

    async def one(job_id: int) -> tuple[int, data.Job | None]:
        async with gate:
            return job_id, (await s.job.find(data.JobId(value=job_id))).data

    return dict(await asyncio.gather(*(one(i) for i in ids)))


async def job_statuses(s: Services, ids: list[int]) -> dict[int, data.JobStatus | None]:
    """Each job's status now (None: it has ended), a few at a time."""
    gate = asyncio.Semaphore(FIND_CONCURRENCY)

    async def one(job_id: int) -> tuple[int, data.JobStatus | None]:
        async with gate:
            return job_id, (await s.job_status.find(data.JobId(value=job_id))).status

    return dict(await asyncio.gather(*(one(i) for i in ids)))


async def job_records(s: Services, jobs: list[data.Job]) -> list[present.Record]:
    lookup = Lookup(s)
    return [await present.job(j, lookup) for j in jobs]


async def results_page(s: Services, limit: int, offset: int) -> list[data.JobResult]:
    return [r async for r in s.job_result.find_list(svc.FindListRequest(limit=limit, offset=offset))]


async def result_records(s: Services, results: list[data.JobResult]) -> list[present.Record]:
    lookup = Lookup(s)
    return [await present.job_result(r, lookup) for r in results]


async def result(s: Services, result_id: int) -> tuple[data.JobResult | None, present.Record | None]:
    found = (await s.job_result.find(data.JobResultId(value=result_id))).data
    if found is None or found.data is None:
        return None, None
    return found, await present.job_result(found, Lookup(s))


async def results_of_job(s: Services, job_id: int) -> list[data.JobResult]:
    request = svc.FindListByJobIdRequest(job_id=data.JobId(value=job_id))
    return [r async for r in s.job_result.find_list_by_job_id(request)]


async def follow_worker(s: Services, worker_id: int, on_result: Callable[[data.JobResult, Any], None],
                        decode: bool) -> None:
    """Every result of the worker from now on (ListenStreamByWorker), handed to `on_result` with its
    record (decoded, when `decode`) until the stream ends or the task is cancelled."""
    lookup = Lookup(s) if decode else None
    request = svc.ListenStreamByWorkerRequest(worker_id=data.WorkerId(value=worker_id))
    async for item in s.job_result.listen_stream_by_worker(request, timeout=None):
        on_result(item, await present.job_result(item, lookup) if lookup is not None else None)


def _job_id_ms(result: data.JobResult) -> int:
    """When the result's job was enqueued, from its snowflake id (ms since the epoch << 22)."""
    return result.data.job_id.value >> 22 if result.data is not None and result.data.job_id is not None else 0


async def offset_before(s: Services, ms: int) -> int:
    """The offset of the first stored result (newest first) whose job was enqueued at or before
    `ms`: results are listed by job id, newest first, and a job id carries its enqueue time, so an
    exponential then binary search finds it in about 2 log2(n) one-row pages, never a scan."""

    async def at(offset: int) -> data.JobResult | None:
        rows = await results_page(s, 1, offset)
        return rows[0] if rows else None

    first = await at(0)
    if first is None or _job_id_ms(first) <= ms:
        return 0
    low, high = 0, 1  # low: enqueued after `ms`; high: at or before it (or past the end)
    while (row := await at(high)) is not None and _job_id_ms(row) > ms:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        row = await at(middle)
        if row is None or _job_id_ms(row) <= ms:
            high = middle
        else:
            low = middle
    return high


async def channel_info(s: Services) -> list[ext.ChannelInfo] | None:
    """Each channel's runner hosts and their restarts as the worker processes report them
    (ChannelInfoService, this server's extension); None from a front that lacks it."""
    try:
        return (await s.channel_info.find_all(data.Empty())).channels
    except GRPCError as e:
        if e.status == Status.UNIMPLEMENTED:
            return None
        raise
