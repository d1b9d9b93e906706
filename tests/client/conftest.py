"""A real server with the test functions (`functions/`) loaded, for the Python client's tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobworkerp.testing.server import ServerProcess

FUNCTIONS_DIR = Path(__file__).resolve().parent / "functions"
# The client imports the same module the server serves (client.call(fn) needs the function).
sys.path.insert(0, str(FUNCTIONS_DIR))


def functions_env() -> dict[str, str]:
    return {"PLUGINS_RUNNER_DIR": str(FUNCTIONS_DIR)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A Standalone all-in-one server serving the test functions."""
    proc = ServerProcess(tmp_path_factory.mktemp("client-server"), functions_env()).start()
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def address(server: ServerProcess) -> str:
    return f"127.0.0.1:{server.port}"
