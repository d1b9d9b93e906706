"""A private Redis server for tests that break Redis: its own port and data directory, so the
machine's shared Redis (127.0.0.1:6379) is never touched. AOF is on with fsync on every write, so
a restart loses nothing that was acknowledged — what a test sees after it is the server's doing."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jobworkerp.testing.server import free_port
from tests.chaos.private_server import stop_cleanly, wait_until_answering

START_TIMEOUT_S = 30.0


class RedisInstance:
    """`extra_args` are more redis-server options (a password, TLS); `tls_port` is allocated for
    tests that pass TLS options (the plain port still answers, for the readiness check)."""

    def __init__(self, workdir: Path, extra_args: list[str] | None = None) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port()
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisInstance:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
             "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--logfile", str(self.dir / "redis.log"), *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_answering(self.proc, self._answers, f"redis-server on port {self.port}",
                             lambda: (self.dir / "redis.log").read_text()[-2000:], START_TIMEOUT_S)
        return self

    @contextmanager
    def running(self) -> Iterator[RedisInstance]:
        """Started for the block, stopped after it (unless the test stopped it already)."""
        self.start()
        try:
            yield self
        finally:
            if self.proc is not None:
                self.stop()

    def stop(self) -> None:
        """SIGTERM: Redis flushes its AOF and exits (what `redis-cli shutdown` does)."""
        stop_cleanly(self.proc, 30)
        self.proc = None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
                return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")  # up (with a password)
        except OSError:
            return False
