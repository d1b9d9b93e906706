"""One line of an `enqueue-bulk` file -> a v0.7 JobRequest, with the single `job enqueue`'s rules.

A line is a JSON object: `worker` (a JSON number is a worker id, a string a worker name), `args`
(JSON in the runner's args message, encoded as `job enqueue --args` is; a plain string for a
runner without an args proto), and optional `priority` (high|medium|low), `run_after_time`
(epoch ms; below 10^12 ms from now, as `--run-after-time`), `uniq_key` and `timeout` (ms, 0 =
none). A line that breaks these rules is refused here, naming the key, and never sent.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from jobworkerp.cli.client import values as v
from jobworkerp.cli.client.lookup import Lookup
from jobworkerp.client.protocodec import CodecError, encode_input
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc

KEYS = ("worker", "args", "priority", "run_after_time", "uniq_key", "timeout")


class LineError(Exception):
    """A line the client refuses before sending (its message names the key)."""


def _integer(line: dict[str, Any], key: str) -> int | None:
    value = line.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LineError(f"{key}: expected a non-negative integer, got {json.dumps(value)}")
    return value


def _worker(line: dict[str, Any]) -> int | str:
    ref = line.get("worker")
    if isinstance(ref, str) and ref:
        return ref
    if isinstance(ref, int) and not isinstance(ref, bool) and 0 < ref < 2**63:
        return ref
    raise LineError('worker: required, a worker id (a JSON number) or name (a non-empty string), '
                    f"got {json.dumps(ref)}")


async def _args(lookup: Lookup, worker: data.Worker, value: Any) -> bytes:
    if value is None:
        return b""
    runner_id = worker.data.runner_id.value if worker.data is not None and worker.data.runner_id is not None else 0
    runner = await lookup.runner(runner_id)
    proto = runner.data.job_args_proto if runner is not None and runner.data is not None else None
    if (proto or "").strip():
        if not isinstance(value, dict):
            raise LineError(f"args: must be a JSON object in the runner's args message, got {json.dumps(value)}")
        try:
            return encode_input(proto, json.dumps(value), "args")
        except CodecError as e:
            raise LineError(str(e)) from None
    if not isinstance(value, str):
        raise LineError("args: the runner has no args message; give the args as a string")
    return value.encode()


async def parse_line(lookup: Lookup, text: str) -> svc.JobRequest:
    """The request for one line; raises LineError naming what is wrong."""
    try:
        line = json.loads(text)
    except json.JSONDecodeError as e:
        raise LineError(f"not valid JSON: {e}") from None
    if not isinstance(line, dict):
        raise LineError(f"must be a JSON object, got {type(line).__name__}")
    unknown = sorted(set(line) - set(KEYS))
    if unknown:
        raise LineError(f"{unknown[0]}: unknown key (valid: {', '.join(KEYS)})")
    ref = _worker(line)
    worker = await lookup.worker(ref)
    if worker is None or worker.data is None:
        raise LineError(f"worker: {'worker ' + repr(ref) if isinstance(ref, str) else f'worker {ref}'} not found")
    request = svc.JobRequest(args=await _args(lookup, worker, line.get("args")))
    if isinstance(ref, str):
        request.worker_name = ref
    else:
        request.worker_id = data.WorkerId(value=ref)
    priority = line.get("priority")
    if priority is not None:
        try:
            request.priority = data.Priority[v.priority(priority if isinstance(priority, str) else "")]
        except argparse.ArgumentTypeError:
            raise LineError(f"priority: expected high, medium or low, got {json.dumps(priority)}") from None
    run_after = _integer(line, "run_after_time")
    if run_after:
        request.run_after_time = v.run_after_time(str(run_after))
    uniq_key = line.get("uniq_key")
    if uniq_key is not None:
        if not isinstance(uniq_key, str):
            raise LineError(f"uniq_key: expected a string, got {json.dumps(uniq_key)}")
        request.uniq_key = uniq_key
    request.timeout = _integer(line, "timeout")
    return request
