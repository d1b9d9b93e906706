"""MCP_* variables and `jobworkerp mcp` options: defaults, refusals (exit 2 naming the variable)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jobworkerp.client.connection import TlsFiles, parse_address
from jobworkerp.mcp.settings import DEFAULT_CHANNEL, SettingsError, WorkerFilter, load_settings

pytestmark = pytest.mark.timeout(60)

ADDRESS = parse_address("http://127.0.0.1:9000")


def _load(env: dict[str, str], token: str | None = None, http: bool = True):  # type: ignore[no-untyped-def]
    return load_settings(ADDRESS, token, TlsFiles(), http, env)


def test_defaults() -> None:
    settings = _load({})
    assert (settings.http_host, settings.http_port, settings.bearer_token) == ("127.0.0.1", 9010, None)
    assert settings.filter == WorkerFilter()
    assert (settings.poll_interval_s, settings.progress_interval_s) == (2.0, 5.0)


def test_the_bearer_token_defaults_to_the_servers_token() -> None:
    assert _load({}, token="grpc-secret").bearer_token == "grpc-secret"
    assert _load({"MCP_AUTH_TOKEN": "own"}, token="grpc-secret").bearer_token == "own"


def test_filters() -> None:
    f = _load({"MCP_WORKERS": "a, b,", "MCP_CHANNEL": "gpu"}).filter
    assert (f.admits("a", "gpu"), f.admits("a", None), f.admits("c", "gpu")) == (True, False, False)
    assert WorkerFilter(channel=DEFAULT_CHANNEL).admits("any", None)


@pytest.mark.parametrize(("env", "named"), [
    ({"MCP_ADDR": "0.0.0.0:9010"}, "MCP_ADDR"),  # exposed without a token
    ({"MCP_ADDR": "127.0.0.1"}, "MCP_ADDR"),
    ({"MCP_ADDR": "127.0.0.1:70000"}, "MCP_ADDR"),
    ({"MCP_AUTH_TOKEN": " "}, "MCP_AUTH_TOKEN"),
    ({"MCP_POLL_INTERVAL_MS": "0"}, "MCP_POLL_INTERVAL_MS"),
    ({"MCP_PROGRESS_INTERVAL_MS": "soon"}, "MCP_PROGRESS_INTERVAL_MS"),
])
def test_refusals_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        _load(env)


def test_an_exposed_address_with_a_token_is_fine() -> None:
    assert _load({"MCP_ADDR": "[::]:9010", "MCP_AUTH_TOKEN": "t"}).http_host == "::"
    assert _load({"MCP_ADDR": "0.0.0.0:9010"}, http=False).http is False  # stdio does not listen


def test_the_command_exits_2_on_a_bad_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k not in ("JOBWORKERP_AUTH_TOKEN", "MCP_AUTH_TOKEN")}
    done = subprocess.run([sys.executable, "-m", "jobworkerp", "mcp", "--http"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30, env={**env, "MCP_ADDR": "0.0.0.0:9010"}, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert "configuration error: MCP_ADDR" in done.stderr
