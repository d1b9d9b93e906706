"""Issue 15's acceptance, end to end: the SDK's own client, over stdio (`jobworkerp mcp` as its
subprocess) and over streamable HTTP (`jobworkerp mcp --http`), in front of a real Standalone
server with the `hello` plugin; both protocol eras where they differ (list changes, cancellation).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp.types as types
import pytest
from mcp.shared.exceptions import MCPError

from jobworkerp.proto.jobworkerp import data
from jobworkerp.testing.server import ServerProcess, connect
from tests.mcp.harness import (
    DEADLINE_S,
    ERAS,
    ROOT,
    TRANSPORTS,
    Endpoint,
    ListChanges,
    McpHttpProcess,
    command_settings,
    create_worker,
    job_gone,
    runner_id,
    scenario,
    stored_statuses,
    wait_until,
)

pytestmark = pytest.mark.timeout(300)

COMMAND = 1
HELLO_SETTINGS = b"\n\x03mcp"  # hello.HelloRunnerSettings{name: "mcp"}
COMMAND_ARGS_SCHEMA = {"type": "object", "properties": {"args": {"type": "array", "items": {"type": "string"}}},
                       "additionalProperties": False}


async def _setup(port: int) -> None:
    async with connect(port) as grpc:
        hello = await runner_id(grpc, "hello")
        await create_worker(grpc, "echo", COMMAND, command_settings("echo"), data.ResponseType.DIRECT)
        await create_worker(grpc, "greet", hello, HELLO_SETTINGS, data.ResponseType.LISTEN_AFTER)
        await create_worker(grpc, "fail", COMMAND, command_settings("ls"), data.ResponseType.LISTEN_AFTER)
        await create_worker(grpc, "nap", COMMAND, command_settings("sleep"), data.ResponseType.LISTEN_AFTER)
        await create_worker(grpc, "nap_direct", COMMAND, command_settings("sleep"), data.ResponseType.DIRECT)
        await create_worker(grpc, "fire_and_forget", hello, HELLO_SETTINGS, data.ResponseType.NO_RESULT,
                            store_success=False, store_failure=False)
        await create_worker(grpc, "tick", COMMAND, command_settings("true"), data.ResponseType.NO_RESULT,
                            periodic_interval=3_600_000)


@pytest.fixture(scope="module")
def jw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("mcp-server"), {"PLUGINS_RUNNER_DIR": str(ROOT / "plugins")}).start()
    scenario(lambda: _setup(proc.port))
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def mcp_http(jw: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpHttpProcess]:
    proc = McpHttpProcess(tmp_path_factory.mktemp("mcp-http"), jw.port).start()
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(params=TRANSPORTS)
def endpoint(request: pytest.FixtureRequest, jw: ServerProcess, tmp_path: Path) -> Endpoint:
    http = request.getfixturevalue("mcp_http") if request.param == "http" else None
    return Endpoint(request.param, jw.port, tmp_path, http)


def _text(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


def test_tools_are_the_workers_with_their_args_schema(endpoint: Endpoint) -> None:
    async def run() -> None:
        async with endpoint.client() as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert {"echo", "greet", "fail", "nap", "nap_direct"} <= set(tools)
        assert tools["echo"].input_schema == COMMAND_ARGS_SCHEMA
        assert tools["greet"].input_schema == {"type": "object", "properties": {"arg": {"type": "string"}},
                                               "additionalProperties": False}
        assert '"echo"' in tools["echo"].description and "COMMAND" in tools["echo"].description
        assert "hello (plugin runner)" in tools["greet"].description
        assert "tick" not in tools  # periodic: a call would start a job that never stops

    scenario(run)


@pytest.mark.parametrize(("env", "expected"), [
    ({"MCP_WORKERS": "echo, greet"}, {"echo", "greet"}),
    ({"MCP_CHANNEL": "elsewhere"}, set()),
    ({"MCP_WORKERS": "echo", "MCP_CHANNEL": "__default_job_channel__"}, {"echo"}),
])
def test_workers_can_be_chosen(jw: ServerProcess, tmp_path: Path, env: dict[str, str], expected: set[str]) -> None:
    async def run() -> None:
        async with Endpoint("stdio", jw.port, tmp_path, None).client(env=env) as client:
            assert {tool.name for tool in (await client.list_tools()).tools} == expected
            with pytest.raises(MCPError, match="unknown tool"):
                await client.call_tool("nap", {"args": ["0"]})
            with pytest.raises(MCPError):
                await client.read_resource("jobworkerp://workers/nap/results")

    scenario(run)


def test_a_call_answers_with_the_job_output(endpoint: Endpoint) -> None:
    async def run() -> None:
        async with endpoint.client() as client:
            direct = await client.call_tool("echo", {"args": ["hello", "world"]})
            assert not direct.is_error, direct
            assert _text(direct) == "hello world\n"
            listened = await client.call_tool("greet", {"arg": "from mcp"})
            assert not listened.is_error, listened
            assert _text(listened) == "SUCCESS: arg=from mcp"
            assert listened.structured_content["status"] == "SUCCESS"
            job_id = listened.structured_content["job_id"]

            stored = await client.read_resource(f"jobworkerp://jobs/{job_id}/result")
            record = json.loads(stored.contents[0].text)  # type: ignore[union-attr]
            assert (record["job_id"], record["status"], record["output"]) == (job_id, "SUCCESS",
                                                                             ["SUCCESS: arg=from mcp"])
            listed = {r.uri for r in (await client.list_resources()).resources}
            assert "jobworkerp://workers/greet/results" in listed
            recent = await client.read_resource("jobworkerp://workers/greet/results")
            assert job_id in [r["job_id"] for r in json.loads(recent.contents[0].text)]  # type: ignore[union-attr]

    scenario(run)


def test_a_no_result_worker_answers_or_says_its_result_was_not_kept(endpoint: Endpoint) -> None:
    """NO_RESULT without stored results: the job may end before the call listens (Standalone's
    bus keeps nothing for late listeners). Either way the call ends, and says which."""
    async def run() -> None:
        async with endpoint.client() as client:
            result = await client.call_tool("fire_and_forget", {"arg": "x"})
        if result.is_error:
            assert "was not kept" in _text(result), result
        else:
            assert _text(result) == "SUCCESS: arg=x"

    scenario(run)


def test_a_failing_command_is_a_tool_error(endpoint: Endpoint) -> None:
    async def run() -> None:
        async with endpoint.client() as client:
            failed = await client.call_tool("fail", {"args": ["/no-such-file-for-mcp"]})
            assert failed.is_error, failed
            assert failed.structured_content["status"] not in ("SUCCESS", None)
            text = _text(failed)
            assert failed.structured_content["status"] in text and "/no-such-file-for-mcp" in text, text
            wrong = await client.call_tool("echo", {"argz": ["x"]})
            assert wrong.is_error and "argz" in _text(wrong), wrong
            with pytest.raises(MCPError, match="unknown tool"):
                await client.call_tool("no-such-worker", {})

    scenario(run)


async def _call_until_cancelled(client: Any, tool: str, arguments: dict[str, Any], ready: Any) -> list[str]:
    """Start a call, let `ready(messages)` say when to give up on it, then cancel it as a client does."""
    messages: list[str] = []
    progressed = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")
        progressed.set()

    async with anyio.create_task_group() as tg:
        async def call() -> None:
            await client.call_tool(tool, arguments, progress_callback=on_progress)
            raise AssertionError(f"the call of {tool} ended before it was cancelled")

        tg.start_soon(call)
        with anyio.fail_after(DEADLINE_S):
            await progressed.wait()
        await ready(messages)
        tg.cancel_scope.cancel()
    return messages


@pytest.mark.parametrize("era", ERAS)
def test_cancelling_a_call_deletes_its_job(endpoint: Endpoint, era: str, jw: ServerProcess) -> None:
    async def run() -> None:
        async with connect(jw.port) as grpc, endpoint.client(era) as client:
            async def running(messages: list[str]) -> None:
                job_id = int(re.search(r"job (\d+)", messages[0]).group(1))  # type: ignore[union-attr]
                await wait_until(lambda: _status_is(grpc, job_id, data.JobStatus.RUNNING), "the job runs")

            messages = await _call_until_cancelled(client, "nap", {"args": ["30"]}, running)
            job_id = int(re.search(r"job (\d+)", messages[0]).group(1))  # type: ignore[union-attr]
            await wait_until(lambda: job_gone(grpc, job_id), "the job is deleted")
            assert await stored_statuses(grpc, job_id) == [data.ResultStatus.CANCELLED]
            assert "nap" in {tool.name for tool in (await client.list_tools()).tools}  # still serving

    scenario(run)


def test_cancelling_a_direct_call_deletes_its_job(endpoint: Endpoint, jw: ServerProcess) -> None:
    async def run() -> None:
        async with connect(jw.port) as grpc, endpoint.client() as client:
            running: list[int] = []

            async def started(_messages: list[str]) -> None:
                async def one_running() -> bool:
                    statuses = [s async for s in grpc.job_status.find_all(data.Empty())]
                    running[:] = [s.id.value for s in statuses if s.status == data.JobStatus.RUNNING]
                    return len(running) == 1

                await wait_until(one_running, "the DIRECT job runs")

            await _call_until_cancelled(client, "nap_direct", {"args": ["30"]}, started)
            await wait_until(lambda: job_gone(grpc, running[0]), "the DIRECT job is deleted")
            assert await stored_statuses(grpc, running[0]) == [data.ResultStatus.CANCELLED]

    scenario(run)


async def _status_is(grpc: Any, job_id: int, status: data.JobStatus) -> bool:
    return (await grpc.job_status.find(data.JobId(value=job_id))).status == status


@pytest.mark.parametrize("era", ERAS)
def test_a_new_worker_becomes_a_tool(endpoint: Endpoint, era: str, jw: ServerProcess) -> None:
    name = f"added_{endpoint.transport}_{era}"

    async def run() -> None:
        changes = ListChanges()
        async with connect(jw.port) as grpc, endpoint.client(era, message_handler=changes.handler) as client:
            assert name not in {tool.name for tool in (await client.list_tools()).tools}
            if era == "legacy":  # the initialize handshake: notifications on the connection
                primer = await changes.prime(grpc, f"{name}_primer")
                seen = changes.count
                worker_id = await create_worker(grpc, name, COMMAND, command_settings("echo"),
                                                data.ResponseType.DIRECT)
                with anyio.fail_after(DEADLINE_S):
                    await changes.beyond(seen)
                    while name not in {tool.name for tool in (await client.list_tools()).tools}:
                        seen = changes.count  # an earlier change announced late: the next one is ours
                        await changes.beyond(seen)
                await grpc.worker.delete(data.WorkerId(value=primer))
            else:  # 2026-07-28: a subscriptions/listen stream
                async with client.listen(tools_list_changed=True) as subscription:
                    worker_id = await create_worker(grpc, name, COMMAND, command_settings("echo"),
                                                    data.ResponseType.DIRECT)
                    with anyio.fail_after(DEADLINE_S):
                        assert await subscription.__anext__() is not None
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert tools[name].input_schema == COMMAND_ARGS_SCHEMA
            assert _text(await client.call_tool(name, {"args": ["new"]})) == "new\n"
            await grpc.worker.delete(data.WorkerId(value=worker_id))

    scenario(run)


def test_a_closed_http_connection_is_forgotten(mcp_http: McpHttpProcess, jw: ServerProcess, tmp_path: Path) -> None:
    """A handshake-era connection is remembered for list changes until it closes (a closed HTTP
    session takes notifications without an error, so only its closing can say it is gone)."""
    def announcements() -> list[str]:
        return re.findall(r"notifying listen streams and (\d+) connections", mcp_http.log())

    async def run() -> None:
        endpoint = Endpoint("http", jw.port, tmp_path, mcp_http)
        async with endpoint.client("legacy") as client:
            await client.list_tools()
        async with connect(jw.port) as grpc:
            created = []
            with anyio.fail_after(DEADLINE_S):
                for i in range(10_000):  # a change per round, until one is announced to no connection
                    seen = len(announcements())
                    created.append(await create_worker(grpc, f"forgotten_{i}", COMMAND, command_settings("true"),
                                                       data.ResponseType.DIRECT))
                    await wait_until(lambda seen=seen: _more(announcements(), seen), "the change is announced")
                    if announcements()[seen] == "0":
                        break
            for worker_id in created:
                await grpc.worker.delete(data.WorkerId(value=worker_id))

    scenario(run)


async def _more(items: list[str], count: int) -> bool:
    return len(items) > count


def test_the_http_endpoint_wants_the_bearer_token(mcp_http: McpHttpProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        answer = httpx.post(mcp_http.url, json=body, headers=headers, timeout=DEADLINE_S)
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"] == "Bearer"
