"""Entities as plain dicts: the single shape both the table and the JSON output are made from.

Conventions: ids are JSON strings (64-bit snowflake ids do not survive a trip through a double,
e.g. in older jq); enums are names, not numbers; every epoch-ms time `x` is kept as a number and
joined by `x_iso` (local time, ISO 8601) or null when the time is 0 (unset).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from jobworkerp.client.protocodec import first_message_name

if TYPE_CHECKING:
    from jobworkerp.cli.client.lookup import Lookup
    from jobworkerp.proto.jobworkerp import data
    from jobworkerp.proto.jobworkerp import service as svc

Record = dict[str, Any]


def iso(ms: int) -> str | None:
    if not ms:
        return None
    try:
        return datetime.datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return None


def _id(message: Any) -> str | None:
    return str(message.value) if message is not None else None


def _times(record: Record, **times: int) -> None:
    for key, ms in times.items():
        record[key] = ms
        record[f"{key}_iso"] = iso(ms)


def _enum(value: Any) -> str:
    name = getattr(value, "name", None)
    return name if name else str(int(value))


def runner(r: data.Runner) -> Record:
    d = r.data
    assert d is not None
    return {
        "id": _id(r.id),
        "name": d.name,
        "runner_type": _enum(d.runner_type),
        "settings_message": first_message_name(d.runner_settings_proto),
        "args_message": first_message_name(d.job_args_proto),
        "result_message": first_message_name(d.result_output_proto or ""),
        "runner_settings_proto": d.runner_settings_proto,
        "job_args_proto": d.job_args_proto,
        "result_output_proto": d.result_output_proto,
    }


def retry_policy(p: data.RetryPolicy | None) -> Record | None:
    if p is None:
        return None
    return {"type": _enum(p.type), "interval": p.interval, "max_interval": p.max_interval,
            "max_retry": p.max_retry, "basis": round(p.basis, 6)}


async def worker(w: data.Worker, lookup: Lookup) -> Record:
    d = w.data
    assert d is not None
    runner_id = d.runner_id.value if d.runner_id is not None else None
    runner_row = await lookup.runner(runner_id) if runner_id else None
    return {
        "id": _id(w.id),
        "name": d.name,
        "runner_id": str(runner_id) if runner_id else None,
        "runner_name": runner_row.data.name if runner_row is not None and runner_row.data else None,
        "runner_settings": await lookup.decode_settings(runner_id, d.runner_settings),
        "periodic_interval": d.periodic_interval,
        "channel": d.channel,
        "queue_type": _enum(d.queue_type),
        "response_type": _enum(d.response_type),
        "store_success": d.store_success,
        "store_failure": d.store_failure,
        "next_workers": [str(n.value) for n in d.next_workers],
        "use_static": d.use_static,
        "retry_policy": retry_policy(d.retry_policy),
    }


async def job(j: data.Job, lookup: Lookup) -> Record:
    d = j.data
    assert d is not None
    worker_id = d.worker_id.value if d.worker_id is not None else None
    record: Record = {
        "id": _id(j.id),
        "worker_id": str(worker_id) if worker_id else None,
        "args": await lookup.decode_args(worker_id, d.args),
        "uniq_key": d.uniq_key,
        "priority": _enum(d.priority),
        "retried": d.retried,
        "timeout": d.timeout,
    }
    _times(record, enqueue_time=d.enqueue_time, run_after_time=d.run_after_time,
           grabbed_until_time=d.grabbed_until_time or 0)
    return record


async def job_result(r: data.JobResult, lookup: Lookup) -> Record:
    d = r.data
    assert d is not None
    worker_id = d.worker_id.value if d.worker_id is not None else None
    record: Record = {
        "id": _id(r.id),
        "job_id": _id(d.job_id),
        "worker_id": str(worker_id) if worker_id else None,
        "worker_name": d.worker_name,
        "status": _enum(d.status),
        "output": await lookup.decode_output(worker_id, list(d.output.items) if d.output else [],
                                             success=d.status.name == "SUCCESS"),
        "args": await lookup.decode_args(worker_id, d.args),
        "uniq_key": d.uniq_key,
        "retried": d.retried,
        "max_retry": d.max_retry,
        "priority": _enum(d.priority),
        "timeout": d.timeout,
        "response_type": _enum(d.response_type),
        "store_success": d.store_success,
        "store_failure": d.store_failure,
    }
    _times(record, enqueue_time=d.enqueue_time, run_after_time=d.run_after_time,
           start_time=d.start_time, end_time=d.end_time)
    return record


def job_status(s: svc.JobStatusResponse) -> Record:
    return {"job_id": _id(s.id), "status": _enum(s.status)}
