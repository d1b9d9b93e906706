"""A real all-in-one server per test module, and helpers that run the CLI as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from jobworkerp.testing.server import ServerProcess

CLI_TIMEOUT_S = 60.0


@dataclass
class Result:
    """A finished CLI run."""

    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The single JSON object the command printed (with --json)."""
        lines = self.json_lines()
        assert len(lines) == 1, self.stdout
        return lines[0]

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def ok(self) -> Result:
        assert self.returncode == 0, f"exit {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        return self


def client_command(address: str, *argv: str) -> list[str]:
    return [sys.executable, "-m", "jobworkerp.cli", "-a", address, *argv]


def client_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("JOBWORKERP_AUTH_TOKEN", None)
    env.pop("JOBWORKERP_CLIENT_DEBUG", None)
    return env


def run_cli(address: str, *argv: str, env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT_S) -> Result:
    done = subprocess.run(client_command(address, *argv), capture_output=True, text=True, timeout=timeout,
                          env=env or client_env())
    return Result(done.returncode, done.stdout, done.stderr)


def start_cli(address: str, *argv: str) -> subprocess.Popen[str]:
    """A CLI run in the background (listeners), to be finished with `finish`."""
    return subprocess.Popen(client_command(address, *argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=client_env())


def finish(proc: subprocess.Popen[str], timeout: float = CLI_TIMEOUT_S) -> Result:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"CLI did not finish within {timeout}s\nstdout:\n{out}\nstderr:\n{err}") from None
    return Result(proc.returncode, out, err)


class Cli:
    """The CLI pointed at one server: `cli("worker", "list", "--json")`."""

    def __init__(self, address: str) -> None:
        self.address = address

    def __call__(self, *argv: str, **kwargs: Any) -> Result:
        return run_cli(self.address, *argv, **kwargs)

    def start(self, *argv: str) -> subprocess.Popen[str]:
        return start_cli(self.address, *argv)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("cli-server")).start()
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def cli(server: ServerProcess) -> Cli:
    return Cli(f"http://127.0.0.1:{server.port}")
