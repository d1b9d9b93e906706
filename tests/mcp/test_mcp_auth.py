"""In front of a server that wants an auth token: `jobworkerp mcp` sends it (as the client takes it,
`JOBWORKERP_AUTH_TOKEN` or `--auth-token`), and its HTTP endpoint then wants that token as a bearer
token when MCP_AUTH_TOKEN is not set; without a token for the server, calls fail saying so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from jobworkerp.testing.server import ServerProcess
from tests.mcp.harness import DEADLINE_S, Endpoint, McpHttpProcess, scenario

pytestmark = pytest.mark.timeout(120)
TOKEN = "grpc-secret"


@pytest.fixture(scope="module")
def jw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("mcp-auth-server"), {"AUTH_TOKEN": TOKEN}).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def test_stdio_sends_the_token(jw: ServerProcess, tmp_path: Path) -> None:
    async def run() -> None:
        endpoint = Endpoint("stdio", jw.port, tmp_path, None)
        async with endpoint.client(env={"JOBWORKERP_AUTH_TOKEN": TOKEN}) as client:
            assert (await client.list_tools()).tools == []
        async with endpoint.client() as client:
            with pytest.raises(MCPError, match="UNAUTHENTICATED"):
                await client.list_tools()

    scenario(run)


def test_http_wants_the_servers_token_by_default(jw: ServerProcess, tmp_path: Path) -> None:
    proc = McpHttpProcess(tmp_path, jw.port, {"MCP_AUTH_TOKEN": "", "JOBWORKERP_AUTH_TOKEN": TOKEN})
    proc.env.pop("MCP_AUTH_TOKEN")
    proc.start()
    try:
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        refused = httpx.post(proc.url, json=ping, timeout=DEADLINE_S)
        assert refused.status_code == 401, refused.text
        accepted = httpx.post(proc.url, json=ping, timeout=DEADLINE_S, headers={
            "Authorization": f"Bearer {TOKEN}", "Accept": "application/json, text/event-stream"})
        assert accepted.status_code != 401, accepted.text
    finally:
        assert proc.stop() == 0, proc.log()
