"""`--auth-token` / $JOBWORKERP_AUTH_TOKEN travel as `jobworkerp-auth` metadata."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobworkerp.testing.server import ServerProcess
from tests.cli.conftest import Cli, client_env

pytestmark = pytest.mark.timeout(60)

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("cli-auth"), {"AUTH_TOKEN": TOKEN}).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def test_without_token_is_one_unauthenticated_line(cli: Cli) -> None:
    denied = cli("runner", "count")
    assert denied.returncode == 1 and denied.stdout == ""
    assert len(denied.stderr.strip().splitlines()) == 1 and "UNAUTHENTICATED" in denied.stderr
    assert "UNAUTHENTICATED" in cli("--auth-token", "wrong", "runner", "count").stderr


def test_token_from_option_or_environment(cli: Cli) -> None:
    assert cli("--json", "--auth-token", TOKEN, "runner", "count").ok().json()["total"] >= 4
    env = {**client_env(), "JOBWORKERP_AUTH_TOKEN": TOKEN}
    assert cli("--json", "runner", "count", env=env).ok().json()["total"] >= 4
