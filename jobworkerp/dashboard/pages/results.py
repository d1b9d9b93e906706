"""Results: the stored results with filters (worker, status, end time), one result with its args
and output decoded through the runner's protos (raw bytes on request), and a live tail of one
worker's results (ListenStreamByWorker, sent to the page as Server-Sent Events).

The v0.7 API lists stored results only newest first, by job id, with limit/offset and no filter.
An unfiltered page is one FindList call. A filtered page reads at most SCAN_MAX results from its
offset, keeps the matching ones, and links to the offset where it stopped ("older"), so a filter
that matches rarely costs a bounded read per page, never a scan of the table. An upper end time
first jumps to the results whose jobs were enqueued before it (job ids carry their time:
`queries.offset_before`, a logarithmic search).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

import trio

from jobworkerp.cli.client import present
from jobworkerp.dashboard import queries
from jobworkerp.dashboard.http import Request, Response, Send
from jobworkerp.dashboard.pages.common import PAGE_SIZE, enum_names, local_time_ms, offset_arg, optional_id, path_id
from jobworkerp.dashboard.session import Session
from jobworkerp.dashboard.site import Site
from jobworkerp.proto.jobworkerp import data

SCAN_MAX = 2000  # results read for one filtered page
SCAN_CHUNK = 500
ENQUEUE_SLACK_MS = 2_000  # how far a job id's time may run ahead of its end time (clocks of other nodes)
LIVE_BUFFER = 200  # results held for a slow page; more are dropped (and counted)
LIVE_BACKFILL = 20  # stored results shown when the tail opens
LIVE_MAX_STREAMS = 32
PING_S = 15.0


@dataclass
class Scan:
    rows: list[data.JobResult]
    start: int
    next_offset: int | None  # where "older" continues; None at the end
    scanned: int


async def scan_results(site: Site, offset: int, want: int, budget: int, *, worker_id: int | None = None,
                       status: str = "", from_ms: int | None = None, to_ms: int | None = None) -> Scan:
    """Up to `want` stored results from `offset` on that match, reading at most `budget`."""
    filtered = worker_id is not None or status or from_ms is not None or to_ms is not None
    if not filtered:
        rows = await site.api.run(queries.results_page, want + 1, offset)
        return Scan(rows[:want], offset, offset + want if len(rows) > want else None, len(rows[:want]))
    matches: list[data.JobResult] = []
    cursor = offset
    while cursor - offset < budget:
        chunk = await site.api.run(queries.results_page, min(SCAN_CHUNK, budget - (cursor - offset)), cursor)
        for row in chunk:
            cursor += 1
            d = row.data
            if d is None or (worker_id is not None and (d.worker_id is None or d.worker_id.value != worker_id)):
                continue
            if (status and d.status.name != status) or (from_ms is not None and d.end_time < from_ms) \
                    or (to_ms is not None and d.end_time > to_ms):
                continue
            matches.append(row)
            if len(matches) == want:
                return Scan(matches, offset, cursor, cursor - offset)
        if len(chunk) < SCAN_CHUNK:
            return Scan(matches, offset, None, cursor - offset)
    return Scan(matches, offset, cursor, cursor - offset)


async def list_results(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    worker_id = optional_id(request.arg("worker"), "worker")
    status = request.arg("status")
    if status and status not in enum_names(data.ResultStatus):
        status = ""
    from_ms = local_time_ms(request.arg("from"), request.arg("tz"))
    to_ms = local_time_ms(request.arg("to"), request.arg("tz"))
    offset = offset_arg(request)
    if to_ms is not None and "offset" not in request.query:
        offset = await site.api.run(queries.offset_before, to_ms + ENQUEUE_SLACK_MS)
    scan = await scan_results(site, offset, PAGE_SIZE, SCAN_MAX, worker_id=worker_id, status=status,
                              from_ms=from_ms, to_ms=to_ms)
    records = await site.api.run(queries.result_records, scan.rows)
    workers = await site.api.run(queries.all_workers)
    filters = {"worker": request.arg("worker"), "status": status, "from": request.arg("from"),
               "to": request.arg("to"), "tz": request.arg("tz")}
    return site.render("results.html", request, session, title="Results", results=records, scan=scan,
                       filters=filters, statuses=enum_names(data.ResultStatus), workers=workers,
                       filtered=bool(worker_id or status or from_ms or to_ms), scan_max=SCAN_MAX)


def _raw(value: bytes) -> dict[str, str]:
    return {"base64": base64.b64encode(value).decode("ascii"), "text": value.decode("utf-8", "replace"),
            "size": str(len(value))}


async def show_result(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    result_id = path_id(match)
    found, record = await site.api.run(queries.result, result_id)
    if found is None or record is None:
        return site.render("error.html", request, session, 404, title="Not found",
                           message=f"result {result_id} not found (results are stored only when the worker's "
                                   "store_success / store_failure say so)")
    raw = None
    if request.arg("raw"):
        items = list(found.data.output.items) if found.data.output is not None else []
        raw = {"args": _raw(found.data.args), "output": [_raw(item) for item in items]}
    siblings = await site.api.run(queries.results_of_job, found.data.job_id.value)
    return site.render("result.html", request, session, title=f"Result {result_id}", result=record, raw=raw,
                       attempts=[{"id": r.id.value, "status": r.data.status.name, "end_time": r.data.end_time}
                                 for r in siblings if r.id.value != result_id])


async def live(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    workers = [w for w in await site.api.run(queries.all_workers) if w.data.response_type != data.ResponseType.DIRECT]
    worker_id = optional_id(request.arg("worker"), "worker")
    chosen = next((w for w in workers if w.id.value == worker_id), None)
    return site.render("live.html", request, session, title="Live results", workers=workers, chosen=chosen)


class _LiveStreams:
    """How many live tails are open: each holds a ListenStreamByWorker on the server."""

    open = 0


def _event(kind: str, payload: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


LIVE_ITEMS = 5  # output items sent per result to a live tail (its detail page has them all)
LIVE_TEXT = 2000  # characters of each sent


def _clipped(value: Any) -> Any:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= LIVE_TEXT else text[:LIVE_TEXT] + "…"


def _row(record: present.Record) -> dict[str, Any]:
    """What a live tail shows of a result: outputs can be megabytes, the table shows a line."""
    return {"id": record["id"], "job_id": record["job_id"], "status": record["status"],
            "end_time": record["end_time_iso"], "output": [_clipped(item) for item in record["output"][:LIVE_ITEMS]],
            "args": _clipped(record["args"])}


async def live_stream(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    worker_id = optional_id(request.arg("worker"), "worker")
    if worker_id is None:
        return Response(400, b"worker: required", "text/plain; charset=utf-8")
    if _LiveStreams.open >= LIVE_MAX_STREAMS:
        return Response(503, b"too many live tails open", "text/plain; charset=utf-8")

    async def stream(send: Send) -> None:
        _LiveStreams.open += 1
        try:
            await _follow(site, worker_id, send)
        finally:
            _LiveStreams.open -= 1

    return Response(200, b"", "text/event-stream; charset=utf-8", [("cache-control", "no-store")], stream=stream)


async def _follow(site: Site, worker_id: int, send: Send) -> None:
    """Subscribe first, then send the latest stored results, then each new one as it comes."""
    sender, receiver = trio.open_memory_channel[dict[str, Any]](LIVE_BUFFER)
    dropped = 0

    def on_result(_: data.JobResult, record: present.Record) -> None:  # called on the asyncio side
        nonlocal dropped
        try:
            sender.send_nowait(_row(record))
        except trio.WouldBlock:
            dropped += 1

    async def follow() -> None:
        try:
            await site.api.run(queries.follow_worker, worker_id, on_result, True)
            ending = {"message": "the server ended the stream"}
        except Exception as e:
            ending = {"message": f"the stream ended: {getattr(e, 'message', None) or e}"}
        try:
            sender.send_nowait({"end": ending})
        except trio.WouldBlock:
            pass  # the page is far behind; it learns of the end when it reconnects

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        await send(b"retry: 5000\n\n")
        backfill = await scan_results(site, 0, LIVE_BACKFILL, 1000, worker_id=worker_id)
        for record in reversed(await site.api.run(queries.result_records, backfill.rows)):
            await send(_event("result", _row(record)))
        await send(_event("ready", {"worker": str(worker_id)}))
        while True:
            with trio.move_on_after(PING_S):
                item = await receiver.receive()
                if "end" in item:
                    await send(_event("end", item["end"]))
                    break
                if dropped:
                    await send(_event("dropped", {"count": dropped}))
                    dropped = 0
                await send(_event("result", item))
                continue
            await send(b": ping\n\n")
        nursery.cancel_scope.cancel()


def register(site: Site) -> None:
    site.route("GET", "/results", list_results)
    site.route("GET", "/results/live", live)
    site.route("GET", "/results/live/stream", live_stream)
    site.route("GET", r"/results/(?P<id>\d{1,19})", show_result)
