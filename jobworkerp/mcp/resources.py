"""Stored results as MCP resources, JSON in the shape `jobworkerp-client --json` prints.

- `jobworkerp://workers/{worker}/results`: the worker's most recent stored results, newest first
  (one listed per tool). The server has no per-worker result query, so the newest
  `RESULTS_SCANNED` results of all workers are read and filtered.
- `jobworkerp://jobs/{job_id}/result`: a job's final stored result (a template: any job id).

Only results the server stored are there (workers with `store_success` / `store_failure`), and
only of workers that are tools here (MCP_WORKERS, MCP_CHANNEL).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import mcp.types as types
from mcp.shared.exceptions import MCPError

from jobworkerp.cli.client import present
from jobworkerp.cli.client.lookup import Lookup
from jobworkerp.mcp.catalog import PAGE_SIZE, WorkerTool
from jobworkerp.mcp.settings import WorkerFilter
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc

if TYPE_CHECKING:
    from jobworkerp.client.connection import Services

RECENT_RESULTS = 20
RESULTS_SCANNED = 5 * PAGE_SIZE
WORKER_RESULTS_TEMPLATE = "jobworkerp://workers/{worker}/results"
JOB_RESULT_TEMPLATE = "jobworkerp://jobs/{job_id}/result"
_WORKER_RESULTS = re.compile(r"^jobworkerp://workers/([^/]+)/results$")
_JOB_RESULT = re.compile(r"^jobworkerp://jobs/([0-9]+)/result$")
JSON = "application/json"


def worker_results_uri(name: str) -> str:
    return WORKER_RESULTS_TEMPLATE.format(worker=quote(name, safe=""))


def listed(tools: dict[str, WorkerTool]) -> list[types.Resource]:
    return [types.Resource(uri=worker_results_uri(name), name=f"{name} results", mime_type=JSON,
                           description=f"The most recent stored results of worker {name} (at most "
                                       f"{RECENT_RESULTS}, newest first), as JSON")
            for name in tools]


def templates() -> list[types.ResourceTemplate]:
    return [
        types.ResourceTemplate(uri_template=JOB_RESULT_TEMPLATE, name="job result", mime_type=JSON,
                               description="The final stored result of one job (the job id a tool call "
                                           "reports), as JSON"),
        types.ResourceTemplate(uri_template=WORKER_RESULTS_TEMPLATE, name="worker results", mime_type=JSON,
                               description=f"The most recent stored results of one worker (at most "
                                           f"{RECENT_RESULTS}, newest first), as JSON"),
    ]


def _not_found(message: str) -> MCPError:
    return MCPError(types.INVALID_PARAMS, message)  # what the SDK's own servers answer for an unknown resource


async def read(services: Services, worker_filter: WorkerFilter, uri: str) -> types.ReadResourceResult:
    match = _WORKER_RESULTS.match(uri)
    if match:
        value: Any = await _worker_results(services, worker_filter, unquote(match.group(1)))
    elif (match := _JOB_RESULT.match(uri)) is not None:
        value = await _job_result(services, worker_filter, int(match.group(1)))
    else:
        raise _not_found(f"unknown resource {uri!r} (see resources/templates/list)")
    text = json.dumps(value, ensure_ascii=False, indent=1)
    return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type=JSON, text=text)])


async def _admitted_worker(services: Services, worker_filter: WorkerFilter, ref: int | str) -> data.Worker | None:
    if isinstance(ref, str):
        found = (await services.worker.find_by_name(svc.WorkerNameRequest(name=ref))).data
    else:
        found = (await services.worker.find(data.WorkerId(value=ref))).data
    if found is None or found.data is None or not worker_filter.admits(found.data.name, found.data.channel):
        return None
    return found


async def _worker_results(services: Services, worker_filter: WorkerFilter, name: str) -> list[dict[str, Any]]:
    worker = await _admitted_worker(services, worker_filter, name)
    if worker is None:
        raise _not_found(f"no worker named {name!r} here")
    lookup = Lookup(services)
    lookup.remember_worker(worker)
    picked: list[data.JobResult] = []
    for offset in range(0, RESULTS_SCANNED, PAGE_SIZE):
        page = [r async for r in services.job_result.find_list(svc.FindListRequest(limit=PAGE_SIZE, offset=offset))]
        picked.extend(r for r in page if r.data.worker_id is not None and r.data.worker_id.value == worker.id.value)
        if len(picked) >= RECENT_RESULTS or len(page) < PAGE_SIZE:
            break
    return [await present.job_result(r, lookup) for r in picked[:RECENT_RESULTS]]


async def _job_result(services: Services, worker_filter: WorkerFilter, job_id: int) -> dict[str, Any]:
    request = svc.FindListByJobIdRequest(job_id=data.JobId(value=job_id))
    stored = [r async for r in services.job_result.find_list_by_job_id(request)]
    if not stored:
        raise _not_found(f"no stored result of job {job_id} (only workers with store_success/store_failure "
                         "keep results)")
    newest = stored[0]  # the server lists a job's results newest first
    worker_id = newest.data.worker_id.value if newest.data.worker_id is not None else 0
    if worker_filter != WorkerFilter() and await _admitted_worker(services, worker_filter, worker_id) is None:
        raise _not_found(f"job {job_id} is not of a worker served here")
    return await present.job_result(newest, Lookup(services))
