"""The bind check on a real server process: an exposed GRPC_ADDR without TLS or token does not
start (exit 2 naming GRPC_ADDR); ALLOW_INSECURE_BIND or a token lets it start, with a warning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jobworkerp.testing.server import ServerProcess

pytestmark = pytest.mark.timeout(120)


def test_wildcard_bind_without_tls_or_token_exits_2_naming_grpc_addr(tmp_path: Path) -> None:
    env = ServerProcess(tmp_path).env | {"GRPC_ADDR": "0.0.0.0:0"}
    env.pop("AUTH_TOKEN", None)
    done = subprocess.run([sys.executable, "-m", "jobworkerp", "all-in-one", "--env-file", str(tmp_path / "none.env")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "GRPC_ADDR" in done.stderr and "ALLOW_INSECURE_BIND" in done.stderr


@pytest.mark.parametrize(("env", "warning"), [({"ALLOW_INSECURE_BIND": "true"}, "ALLOW_INSECURE_BIND"),
                                              ({"AUTH_TOKEN": "t0ken"}, "plaintext")])
def test_wildcard_bind_starts_when_allowed_or_with_a_token(tmp_path: Path, env: dict[str, str], warning: str) -> None:
    proc = ServerProcess(tmp_path, env, host="0.0.0.0").start()
    try:
        assert proc.alive()
        assert any("WARN" in line and warning in line for line in proc.log().splitlines()), proc.log()
    finally:
        assert proc.stop() == 0, proc.log()
