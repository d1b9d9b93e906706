"""A job's final result as an MCP tool result.

Success: one content block per output item — the runner's result message as JSON text when the
runner declares one, else the item as text when it is UTF-8, else the bytes as an embedded binary
resource (base64, as MCP carries binary). Any other status is a tool error (`isError`), whose text
names the job, the status and the runner's message, so the agent can read what went wrong. Either
way `structuredContent` holds the same as JSON for programs: job id, status, output items (as
`jobworkerp-client --json` shows them).
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import mcp.types as types

from jobworkerp.client.protocodec import compile_first_message, decode_value
from jobworkerp.proto.jobworkerp import data

if TYPE_CHECKING:
    from jobworkerp.mcp.catalog import WorkerTool

JOB_URI = "jobworkerp://jobs/{job_id}/result"


def error(text: str) -> types.CallToolResult:
    """A tool error: the call was understood, the work did not succeed."""
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


def _item_block(proto_text: str | None, raw: bytes, uri: str) -> types.ContentBlock:
    if proto_text:
        try:
            value = compile_first_message(proto_text).decode(raw)
            return types.TextContent(text=json.dumps(value, ensure_ascii=False))
        except Exception:  # not the declared message after all: fall through to text / bytes
            pass
    try:
        return types.TextContent(text=raw.decode("utf-8"))
    except UnicodeDecodeError:
        blob = types.BlobResourceContents(uri=uri, mime_type="application/octet-stream",
                                          blob=base64.b64encode(raw).decode("ascii"))
        return types.EmbeddedResource(resource=blob)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def tool_result(tool: WorkerTool, job_id: int, result: data.JobResult) -> types.CallToolResult:
    d = result.data
    items = list(d.output.items) if d.output is not None else []
    status = d.status
    structured: dict[str, Any] = {"job_id": str(job_id), "worker": tool.name, "status": status.name}
    if status == data.ResultStatus.SUCCESS:
        proto_text = tool.result_proto()
        uri = JOB_URI.format(job_id=job_id)
        structured["output"] = [decode_value(proto_text, item) for item in items]
        blocks = [_item_block(proto_text, item, f"{uri}#output-{i}") for i, item in enumerate(items)]
        if not blocks:
            blocks = [types.TextContent(text=f"job {job_id} on worker {tool.name} succeeded with no output")]
        return types.CallToolResult(content=blocks, structured_content=structured)
    message = "; ".join(_text(item) for item in items).strip() or "(no message)"
    structured["output"] = [_text(item) for item in items]
    retried = f" after {d.retried} retries" if d.retried else ""
    text = f"job {job_id} on worker {tool.name} ended with {status.name}{retried}: {message}"
    return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=structured,
                                is_error=True)
