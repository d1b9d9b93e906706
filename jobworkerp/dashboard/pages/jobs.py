"""Jobs: the jobs in flight (queued, scheduled, running) with their status, filtered by worker and
state, newest first; delete (which cancels a running job); enqueue from a form generated from the
runner's args message (or raw JSON) with priority, run_after_time, uniq_key and timeout.

Which jobs are in flight, and how they are looked up, is inflight.py's; a page shows PAGE_SIZE of
them, keyed by job id (`before`), and looks up the details of at most FIND_BUDGET more jobs when a
worker filter needs them.
"""

from __future__ import annotations

import re
from typing import Any

from jobworkerp.client.protocodec import CodecError
from jobworkerp.dashboard import queries
from jobworkerp.dashboard.http import HttpError, Request, Response, redirect
from jobworkerp.dashboard.inflight import channel_of, state_of
from jobworkerp.dashboard.pages.common import (
    PAGE_SIZE,
    codec_of,
    first,
    local_time_ms,
    optional_id,
    path_id,
    posted_message,
)
from jobworkerp.dashboard.protoform import FormError, collect, fields_of
from jobworkerp.dashboard.session import Session
from jobworkerp.dashboard.site import Site
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc

STATES = ("queued", "scheduled", "running", "wait_result")
FIND_BUDGET = 500
PRIORITIES = ("HIGH", "MEDIUM", "LOW")


async def list_jobs(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    worker_id = optional_id(request.arg("worker"), "worker")
    state = request.arg("state") if request.arg("state") in STATES else ""
    before = optional_id(request.arg("before"), "before")
    snapshot = await site.inflight.snapshot()
    candidates = [(job_id, status) for job_id, status in snapshot.statuses if before is None or job_id < before]
    if worker_id is not None:
        await site.inflight.details(snapshot, [job_id for job_id, _ in candidates[:FIND_BUDGET]])
    rows: list[tuple[int, data.JobStatus, data.Job | None]] = []
    for job_id, status in candidates:
        job = snapshot.job(job_id)
        if worker_id is not None and (job is None or job.data.worker_id.value != worker_id):
            continue
        if state and state_of(status, job, snapshot.taken_ms) != state:
            continue
        rows.append((job_id, status, job))
        if len(rows) > PAGE_SIZE:
            break
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    await site.inflight.details(snapshot, [job_id for job_id, _, job in rows if job is None])
    jobs = [snapshot.job(job_id) for job_id, _, _ in rows]
    records = await site.api.run(queries.job_records, [j for j in jobs if j is not None])
    by_id = {int(r["id"]): r for r in records}
    table = []
    for job_id, status, _ in rows:
        job = snapshot.job(job_id)
        worker = snapshot.worker_of(job)
        table.append({"id": str(job_id), "status": status.name, "state": state_of(status, job, snapshot.taken_ms),
                      "job": by_id.get(job_id), "worker": worker.data.name if worker is not None else None,
                      "worker_id": str(worker.id.value) if worker is not None else None,
                      "channel": channel_of(worker) if worker is not None else None})
    return site.render("jobs.html", request, session, title="Jobs", jobs=table, states=STATES,
                       workers=sorted(snapshot.workers.values(), key=lambda w: w.data.name),
                       filters={"worker": request.arg("worker"), "state": state},
                       next_before=table[-1]["id"] if more and table else None,
                       in_flight=len(snapshot.statuses), truncated=snapshot.truncated)


async def _worker_and_runner(site: Site, text: str) -> tuple[data.Worker, data.Runner]:
    worker_id = optional_id(text, "worker")
    if worker_id is None:
        raise HttpError(400, "worker: required")
    worker, runner, _ = await site.api.run(queries.worker, worker_id)
    if worker is None or runner is None:
        raise HttpError(404, f"worker {worker_id} (or its runner) not found")
    return worker, runner


def _args_form(runner: data.Runner, values: Any = None, raw_json: str = "") -> dict[str, Any]:
    codec = codec_of(runner.data.job_args_proto)
    return {"fields": fields_of(codec.message_class.DESCRIPTOR, "args", values) if codec is not None else [],
            "message": codec.full_name if codec is not None else None, "raw_json": raw_json,
            "proto": runner.data.job_args_proto}


async def new_job(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    if not request.arg("worker"):
        workers = await site.api.run(queries.all_workers)
        return site.render("job_pick_worker.html", request, session, title="Enqueue a job", workers=workers)
    worker, runner = await _worker_and_runner(site, request.arg("worker"))
    return site.render("job_form.html", request, session, title="Enqueue a job", worker=worker, runner=runner,
                       args=_args_form(runner), options={"priority": "MEDIUM", "run_after": "", "uniq_key": "",
                                                         "timeout": ""},
                       priorities=PRIORITIES, error=None)


def args_bytes(runner: data.Runner, form: dict[str, list[str]]) -> bytes:
    return posted_message(runner.data.job_args_proto, form, "args", "args")


def job_request(worker: data.Worker, runner: data.Runner, form: dict[str, list[str]]) -> svc.JobRequest:
    priority = first(form, "priority", "MEDIUM")
    if priority not in PRIORITIES:
        raise FormError(f"priority: expected one of {', '.join(PRIORITIES)}")
    request = svc.JobRequest(worker_id=worker.id, args=args_bytes(runner, form),
                             priority=data.Priority[priority])
    run_after = local_time_ms(first(form, "run_after"), first(form, "tz"))
    if run_after:
        request.run_after_time = run_after
    if first(form, "uniq_key").strip():
        request.uniq_key = first(form, "uniq_key").strip()
    timeout = first(form, "timeout").strip()
    if timeout:
        if not timeout.isdigit():
            raise FormError(f"timeout: expected milliseconds, got {timeout!r}")
        request.timeout = int(timeout)
    return request


async def enqueue(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    form = site.form(request, session)
    worker, runner = await _worker_and_runner(site, first(form, "worker"))
    try:
        job_request_ = job_request(worker, runner, form)
    except (FormError, CodecError, HttpError) as e:
        values = None
        codec = codec_of(runner.data.job_args_proto)
        if codec is not None:
            try:
                values = collect(codec.message_class.DESCRIPTOR, form, "args")
            except FormError:
                values = None
        options = {key: first(form, key) for key in ("priority", "run_after", "uniq_key", "timeout")}
        return site.render("job_form.html", request, session, 400, title="Enqueue a job", worker=worker,
                           runner=runner, args=_args_form(runner, values, first(form, "args_json")),
                           options=options, priorities=PRIORITIES, error=getattr(e, "message", None) or str(e))
    job_id, result = await site.api.run(queries.enqueue, job_request_)
    if result is not None:  # DIRECT: the answer came with the call
        return site.render("direct_result.html", request, session, title=f"Job {job_id}", job_id=job_id,
                           result=result)
    session.flash("ok", f"job {job_id} enqueued")
    return redirect(f"/jobs?worker={worker.id.value}")


async def delete_job(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    job_id = path_id(match)
    form = site.form(request, session)
    deleted = await site.api.run(queries.delete_job, job_id)
    session.flash("ok" if deleted else "bad",
                  f"job {job_id} {'deleted (a running job is cancelled)' if deleted else 'was not found'}")
    back = first(form, "back", "/jobs")
    return redirect(back if back.startswith("/") and not back.startswith("//") else "/jobs")


def register(site: Site) -> None:
    site.route("GET", "/jobs", list_jobs)
    site.route("POST", "/jobs", enqueue)
    site.route("GET", "/jobs/new", new_job)
    site.route("POST", r"/jobs/(?P<id>\d{1,19})/delete", delete_job)
