"""Workers: list, create and edit (the runner's settings as a generated form, or raw JSON, plus the
worker's options), delete, and a worker's recent results."""

from __future__ import annotations

import json
import re
from typing import Any

from jobworkerp.cli.client import present
from jobworkerp.client.protocodec import CodecError
from jobworkerp.dashboard import queries
from jobworkerp.dashboard.http import HttpError, Request, Response, redirect
from jobworkerp.dashboard.pages.common import (
    PAGE_SIZE,
    codec_of,
    enum_names,
    first,
    offset_arg,
    path_id,
    posted_message,
)
from jobworkerp.dashboard.pages.results import scan_results
from jobworkerp.dashboard.protoform import FormError, collect, fields_of
from jobworkerp.dashboard.session import Session
from jobworkerp.dashboard.site import Site
from jobworkerp.proto.jobworkerp import data

RECENT_RESULTS = 20
RECENT_SCAN = 1000  # newest stored results looked through for a worker's recent ones

NEW_OPTIONS: dict[str, Any] = {
    "name": "", "channel": "", "queue_type": "NORMAL", "response_type": "NO_RESULT", "store_success": True,
    "store_failure": True, "periodic_interval": "0", "use_static": False, "next_workers": "",
    "retry_type": "NONE", "retry_interval": "0", "retry_max_interval": "0", "retry_max_retry": "0",
    "retry_basis": "2.0",
}
ENUMS: dict[str, Any] = {"queue_types": enum_names(data.QueueType), "response_types": enum_names(data.ResponseType),
         "retry_types": enum_names(data.RetryType)}


def _options_of(record: present.Record) -> dict[str, Any]:
    retry = record.get("retry_policy") or {}
    return {
        "name": record["name"], "channel": record["channel"] or "", "queue_type": record["queue_type"],
        "response_type": record["response_type"], "store_success": record["store_success"],
        "store_failure": record["store_failure"], "periodic_interval": str(record["periodic_interval"]),
        "use_static": record["use_static"], "next_workers": ", ".join(record["next_workers"]),
        "retry_type": retry.get("type", "NONE"), "retry_interval": str(retry.get("interval", 0)),
        "retry_max_interval": str(retry.get("max_interval", 0)), "retry_max_retry": str(retry.get("max_retry", 0)),
        "retry_basis": str(retry.get("basis", 2.0)),
    }


def _options_posted(form: dict[str, list[str]]) -> dict[str, Any]:
    options: dict[str, Any] = {key: first(form, key, str(default)) for key, default in NEW_OPTIONS.items()
               if not isinstance(default, bool)}
    options.update({key: key in form for key, default in NEW_OPTIONS.items() if isinstance(default, bool)})
    return options


def _number(options: dict[str, Any], key: str, kind: type = int) -> Any:
    text = str(options[key]).strip() or "0"
    try:
        value = kind(text)
    except ValueError:
        raise FormError(f"{key}: expected a number, got {text!r}") from None
    if value < 0:
        raise FormError(f"{key}: must not be negative")
    return value


def _enum(enum: Any, options: dict[str, Any], key: str) -> Any:
    try:
        return enum[options[key]]
    except KeyError:
        raise FormError(f"{key}: unknown value {options[key]!r}") from None


def settings_bytes(runner: data.Runner, form: dict[str, list[str]]) -> bytes:
    """The posted settings: the raw JSON (or text) when given, else the generated form's fields."""
    return posted_message(runner.data.runner_settings_proto, form, "settings", "settings")


def worker_data(runner: data.Runner, form: dict[str, list[str]]) -> data.WorkerData:
    options = _options_posted(form)
    next_workers = []
    for part in str(options["next_workers"]).replace(",", " ").split():
        if not part.isdigit() or int(part) == 0:
            raise FormError(f"next_workers: expected worker ids, got {part!r}")
        next_workers.append(data.WorkerId(value=int(part)))
    return data.WorkerData(
        name=str(options["name"]).strip(), runner_id=runner.id, runner_settings=settings_bytes(runner, form),
        retry_policy=data.RetryPolicy(type=_enum(data.RetryType, options, "retry_type"),
                                      interval=_number(options, "retry_interval"),
                                      max_interval=_number(options, "retry_max_interval"),
                                      max_retry=_number(options, "retry_max_retry"),
                                      basis=_number(options, "retry_basis", float)),
        periodic_interval=_number(options, "periodic_interval"), channel=str(options["channel"]).strip() or None,
        queue_type=_enum(data.QueueType, options, "queue_type"),
        response_type=_enum(data.ResponseType, options, "response_type"),
        store_success=bool(options["store_success"]), store_failure=bool(options["store_failure"]),
        next_workers=next_workers, use_static=bool(options["use_static"]))


def _settings_form(runner: data.Runner, values: Any, raw_json: str = "") -> dict[str, Any]:
    codec = codec_of(runner.data.runner_settings_proto)
    fields = fields_of(codec.message_class.DESCRIPTOR, "settings", values if isinstance(values, dict) else None) \
        if codec is not None else []
    return {"fields": fields, "message": codec.full_name if codec is not None else None, "raw_json": raw_json,
            "proto": runner.data.runner_settings_proto}


def _posted_values(runner: data.Runner, form: dict[str, list[str]]) -> Any:
    """The generated fields' posted values as JSON, to show the form again as it was sent."""
    codec = codec_of(runner.data.runner_settings_proto)
    if codec is None:
        return None
    try:
        return collect(codec.message_class.DESCRIPTOR, form, "settings")
    except FormError:
        return None


async def list_workers(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    offset = offset_arg(request)
    rows, more = await site.api.run(queries.workers_page, PAGE_SIZE, offset)
    return site.render("workers.html", request, session, title="Workers", workers=rows, offset=offset,
                       next_offset=offset + PAGE_SIZE if more else None, page_size=PAGE_SIZE)


async def _runner_of(site: Site, text: str) -> data.Runner:
    if not text.isdigit():
        raise HttpError(400, "runner: expected a runner id")
    runner = await site.api.run(queries.runner, int(text))
    if runner is None or runner.data is None:
        raise HttpError(404, f"runner {text} not found")
    return runner


async def new_worker(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    runner_arg = request.arg("runner")
    if not runner_arg:
        runners = [present.runner(r) for r in await site.api.run(queries.runners)]
        return site.render("worker_pick_runner.html", request, session, title="New worker", runners=runners)
    runner = await _runner_of(site, runner_arg)
    return site.render("worker_form.html", request, session, title="New worker", worker_id=None, runner=runner,
                       options=dict(NEW_OPTIONS), settings=_settings_form(runner, None), error=None, **ENUMS)


async def create_worker(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    form = site.form(request, session)
    runner = await _runner_of(site, first(form, "runner"))
    try:
        worker_id = await site.api.run(queries.create_worker, worker_data(runner, form))
    except (FormError, CodecError) as e:
        return _form_again(site, request, session, runner, form, None, str(e))
    session.flash("ok", f"worker {first(form, 'name')!s} created")
    return redirect(f"/workers/{worker_id}")


def _form_again(site: Site, request: Request, session: Session, runner: data.Runner, form: dict[str, list[str]],
                worker_id: int | None, error: str) -> Response:
    settings = _settings_form(runner, _posted_values(runner, form), first(form, "settings_json"))
    return site.render("worker_form.html", request, session, 400, title="Edit worker" if worker_id else "New worker",
                       worker_id=worker_id, runner=runner, options=_options_posted(form), settings=settings,
                       error=error, **ENUMS)


async def show_worker(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    worker_id = path_id(match)
    worker, runner, record = await site.api.run(queries.worker, worker_id)
    if worker is None or record is None:
        return site.render("error.html", request, session, 404, title="Not found",
                           message=f"worker {worker_id} not found")
    recent = await scan_results(site, 0, RECENT_RESULTS, RECENT_SCAN, worker_id=worker_id)
    settings = _settings_form(runner, record["runner_settings"]) if runner is not None else None
    raw = json.dumps(record["runner_settings"], indent=1) if isinstance(record["runner_settings"], dict) else ""
    if settings is not None:
        settings["current_json"] = raw
    return site.render("worker.html", request, session, title=f"Worker {record['name']}", worker=record,
                       runner=runner, settings=settings, options=_options_of(record), recent=recent,
                       recent_scan=RECENT_SCAN, error=None, worker_id=worker_id, **ENUMS)


async def update_worker(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    worker_id = path_id(match)
    form = site.form(request, session)
    worker, runner, _ = await site.api.run(queries.worker, worker_id)
    if worker is None or runner is None:
        raise HttpError(404, f"worker {worker_id} (or its runner) not found")
    try:
        updated = data.Worker(id=worker.id, data=worker_data(runner, form))
        await site.api.run(queries.update_worker, updated)
    except (FormError, CodecError) as e:
        return _form_again(site, request, session, runner, form, worker_id, str(e))
    session.flash("ok", f"worker {worker_id} updated")
    return redirect(f"/workers/{worker_id}")


async def delete_worker(site: Site, request: Request, session: Session, match: re.Match[str]) -> Response:
    worker_id = path_id(match)
    site.form(request, session)
    deleted = await site.api.run(queries.delete_worker, worker_id)
    session.flash("ok" if deleted else "bad", f"worker {worker_id} {'deleted' if deleted else 'was not found'}")
    return redirect("/workers")


def register(site: Site) -> None:
    site.route("GET", "/workers", list_workers)
    site.route("POST", "/workers", create_worker)
    site.route("GET", "/workers/new", new_worker)
    site.route("GET", r"/workers/(?P<id>\d{1,19})", show_worker)
    site.route("POST", r"/workers/(?P<id>\d{1,19})", update_worker)
    site.route("POST", r"/workers/(?P<id>\d{1,19})/delete", delete_worker)
