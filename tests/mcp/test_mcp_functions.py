"""A plain Python function served as a runner (`@jobworkerp.function`, issue 16) is an MCP tool
like any worker: its input schema is the message derived from its type hints (a dataclass
argument a nested object), and a call returns its result message as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import mcp.types as types
import pytest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.testing.server import ServerProcess, connect
from tests.mcp.harness import Endpoint, create_worker, runner_id, scenario

pytestmark = pytest.mark.timeout(300)

FUNCTIONS_DIR = Path(__file__).resolve().parents[1] / "client" / "functions"


@pytest.fixture(scope="module")
def jw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("mcp-functions"), {"PLUGINS_RUNNER_DIR": str(FUNCTIONS_DIR)}).start()

    async def setup() -> None:
        async with connect(proc.port) as grpc:
            await create_worker(grpc, "grow", await runner_id(grpc, "grow"), b"", data.ResponseType.DIRECT)

    scenario(setup)
    yield proc
    assert proc.stop() == 0, proc.log()


def test_a_decorated_function_is_a_tool_with_its_dataclass_schema(jw: ServerProcess, tmp_path: Path) -> None:
    async def run() -> None:
        async with Endpoint("stdio", jw.port, tmp_path, None).client() as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            schema = tools["grow"].input_schema
            box = schema["properties"]["box"]
            assert box["type"] == "object"
            assert set(box["properties"]) >= {"corner", "width", "height", "tags", "labels", "note"}
            assert box["properties"]["corner"]["type"] == "object"
            assert box["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
            answer = await client.call_tool("grow", {"box": {"corner": {"x": 1, "y": 2}, "width": 3, "height": 4},
                                                     "by": 2})
            assert not answer.is_error, answer
            [text] = [block.text for block in answer.content if isinstance(block, types.TextContent)]
            grown = json.loads(text)  # protobuf's JSON mapping: int64 fields as decimal strings
            assert (grown["corner"], grown["width"], grown["height"]) == ({"x": -1.0, "y": 0.0}, "7", "8")

    scenario(run)
