"""Workers as MCP tools: one tool per worker, read fresh from the server.

A tool's name is its worker's name, its input schema the JSON Schema of the runner's args message
(`schema.py`, compiled from the runner's published .proto text as the CLI does), and its
description says what the worker runs. Periodic workers are left out: a job on one runs again and
again after the call, which no tool call should start by accident.

The catalog is read whole (every runner, every worker, a page at a time) for each `tools/list`
and each poll (`changes.py`): a few small messages, and the listing is never stale.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mcp.types as types

from jobworkerp.client.protocodec import CodecError, MessageCodec, compile_first_message, decode_value
from jobworkerp.mcp.schema import RAW_ARGS_PROPERTY, RAW_ARGS_SCHEMA, Schema, message_schema
from jobworkerp.mcp.settings import WorkerFilter
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc

if TYPE_CHECKING:
    from jobworkerp.client.connection import Services

log = logging.getLogger(__name__)

PAGE_SIZE = 1000  # the server's largest page (usecase/paging.py)
SETTINGS_SHOWN_CHARS = 400  # a worker's settings in its description, cut beyond this
# What the built-in runners do (their published proto texts carry no comments to say it).
BUILT_IN_SUMMARIES = {
    data.RunnerType.COMMAND: "runs the executable named in the worker settings (no shell) with the args as its "
                             "arguments; the output is its standard output",
    data.RunnerType.HTTP_REQUEST: "sends one HTTP request to the worker's base_url; the output is the response",
    data.RunnerType.GRPC_UNARY: "makes one unary gRPC call to the worker's server",
    data.RunnerType.DOCKER: "runs a Docker container; the output is its log",
}
# SEP-986: what MCP clients are told a tool name should look like.
_TOOL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_warned_names: set[str] = set()


async def _paged(fetch: Callable[[svc.FindListRequest], AsyncIterator[Any]]) -> list[Any]:
    items: list[Any] = []
    while True:
        page = [item async for item in fetch(svc.FindListRequest(limit=PAGE_SIZE, offset=len(items)))]
        items.extend(page)
        if len(page) < PAGE_SIZE:
            return items


async def list_workers(services: Services) -> list[data.Worker]:
    return await _paged(services.worker.find_list)


async def list_runners(services: Services) -> dict[int, data.Runner]:
    return {r.id.value: r for r in await _paged(services.runner.find_list) if r.id is not None}


def _leading_comment(proto_text: str) -> str:
    """The `//` comment lines a .proto text opens with (built-in runners say what they do there)."""
    lines = []
    for line in proto_text.strip().splitlines():
        stripped = line.strip()
        if not stripped.startswith("//"):
            break
        lines.append(stripped.lstrip("/").strip())
    return " ".join(line for line in lines if line)


@dataclass(frozen=True)
class WorkerTool:
    """One worker as a tool, with what a call needs to encode its arguments."""

    worker: data.Worker
    runner: data.Runner | None
    codec: MessageCodec | None  # None: the runner's args are raw bytes (no args message)
    codec_error: str | None  # the args proto text did not compile (calls fail with this)
    input_schema: Schema
    description: str

    @property
    def name(self) -> str:
        return self.worker.data.name

    @property
    def response_type(self) -> data.ResponseType:
        return self.worker.data.response_type

    def tool(self) -> types.Tool:
        return types.Tool(name=self.name, description=self.description, input_schema=self.input_schema)

    def encode_args(self, arguments: dict[str, Any] | None) -> bytes:
        """Tool arguments -> the job's args bytes; CodecError says what does not fit."""
        arguments = arguments or {}
        if self.codec_error is not None:
            raise CodecError(self.codec_error)
        if self.codec is None:
            unknown = sorted(set(arguments) - {RAW_ARGS_PROPERTY})
            if unknown:
                raise CodecError(f"unknown argument {unknown[0]!r}; this worker takes only {RAW_ARGS_PROPERTY!r}")
            raw = arguments.get(RAW_ARGS_PROPERTY, "")
            if not isinstance(raw, str):
                raise CodecError(f"{RAW_ARGS_PROPERTY!r} must be a string")
            return raw.encode()
        return self.codec.encode_json(json.dumps(arguments), "arguments")

    def result_proto(self) -> str | None:
        """The runner's result message text, when its output items are messages."""
        if self.runner is None or self.runner.data is None:
            return None
        return (self.runner.data.result_output_proto or "").strip() or None


def build_tool(worker: data.Worker, runner: data.Runner | None) -> WorkerTool:
    """The tool of `worker`, whose runner is `runner` (None: gone). Never fails: a tool whose args
    cannot be encoded is still listed, and its calls say why."""
    d = worker.data
    runner_data = runner.data if runner is not None else None
    args_proto = (runner_data.job_args_proto or "").strip() if runner_data is not None else ""
    codec: MessageCodec | None = None
    codec_error: str | None = None
    if runner_data is None:
        codec_error = f"the runner of worker {d.name!r} ({d.runner_id.value if d.runner_id else '?'}) is gone"
        schema: Schema = {"type": "object"}
    elif not args_proto:
        schema = json.loads(json.dumps(RAW_ARGS_SCHEMA))
    else:
        try:
            codec = compile_first_message(args_proto)
            schema = message_schema(codec.message_class.DESCRIPTOR)
        except CodecError as e:  # a plugin's proto text protoc refuses: listed, but calls say why
            codec_error = str(e)
            schema = {"type": "object"}
    return WorkerTool(worker, runner, codec, codec_error, schema, describe(worker, runner, codec))


def describe(worker: data.Worker, runner: data.Runner | None, codec: MessageCodec | None) -> str:
    """What an agent reads to choose the tool: the worker, its runner (and what the runner's proto
    says it does), the settings that make this worker what it is (a COMMAND worker's command), and
    what comes back."""
    d = worker.data
    rd = runner.data if runner is not None else None
    parts = [f'Runs a job on the jobworkerp worker "{d.name}" and answers with the job\'s output.']
    if rd is not None:
        kind = "plugin runner" if rd.runner_type == data.RunnerType.PLUGIN else "built-in runner"
        summary = (BUILT_IN_SUMMARIES.get(rd.runner_type) or _leading_comment(rd.job_args_proto or "")
                   or _leading_comment(rd.runner_settings_proto or ""))
        parts.append(f"Runner: {rd.name} ({kind}){': ' + summary if summary else '.'}")
        if d.runner_settings:
            settings = json.dumps(decode_value(rd.runner_settings_proto, d.runner_settings), ensure_ascii=False)
            if len(settings) > SETTINGS_SHOWN_CHARS:
                settings = settings[:SETTINGS_SHOWN_CHARS] + "..."
            parts.append(f"Worker settings: {settings}.")
    if codec is not None:
        parts.append(f"Arguments: a {codec.full_name} message as JSON.")
    result = (rd.result_output_proto or "").strip() if rd is not None else ""
    if result:
        parts.append("Output: JSON (the runner's result message).")
    return " ".join(parts)


async def fetch_tools(services: Services, worker_filter: WorkerFilter) -> dict[str, WorkerTool]:
    """The tools the filter admits, by name, in the server's order (newest worker first)."""
    runners = await list_runners(services)
    tools: dict[str, WorkerTool] = {}
    for worker in await list_workers(services):
        d = worker.data
        if d is None or d.periodic_interval or not worker_filter.admits(d.name, d.channel):
            continue
        if not _TOOL_NAME.match(d.name) and d.name not in _warned_names:
            _warned_names.add(d.name)  # once per process: the catalog is read on every poll
            log.warning("worker %r is listed as a tool, but MCP clients may refuse its name (letters, digits, "
                        "_ - . only, at most 128)", d.name)
        tools[d.name] = build_tool(worker, runners.get(d.runner_id.value) if d.runner_id else None)
    return tools


async def find_tool(services: Services, worker_filter: WorkerFilter, name: str) -> WorkerTool | None:
    """The tool named `name`, looked up for a call (one worker and its runner, not the catalog)."""
    found = (await services.worker.find_by_name(svc.WorkerNameRequest(name=name))).data
    if found is None or found.data is None or found.data.periodic_interval:
        return None
    if not worker_filter.admits(found.data.name, found.data.channel):
        return None
    runner_id = found.data.runner_id.value if found.data.runner_id else 0
    runner = (await services.runner.find(data.RunnerId(value=runner_id))).data if runner_id else None
    return build_tool(found, runner)


def listing_fingerprint(tools: dict[str, WorkerTool]) -> str:
    """Equal for two catalogs exactly when `tools/list` would answer the same."""
    return json.dumps([tool.tool().model_dump(mode="json", by_alias=True) for tool in tools.values()],
                      sort_keys=True)


