"""The server under test: a real all-in-one subprocess (through `faulty_server`) that a sequence
can stop gracefully, SIGKILL and restart on the same database (and Redis prefix), and whose
storage calls it can make fail.

Each (re)start gets a fresh port (a killed process's port may linger), so clients ask for
`port` / `generation` on every call instead of holding a connection across restarts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import trio

from jobworkerp.testing.server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGINS_DIR = REPO_ROOT / "tests" / "runners" / "plugins"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0

# Short intervals so that lease and scheduling bugs show within a sequence: a claim lease that
# expires while a job is alive shows up about two seconds later instead of thirty.
FETCH_INTERVAL_MS = 200
CLAIM_LEASE_MS = 2000
SERVER_ENV = {
    "WORKER_DEFAULT_CONCURRENCY": "2",
    # A second channel that runs one job at a time: concurrency 1 is where slot accounting breaks.
    "WORKER_CHANNELS": "single",
    "WORKER_CHANNEL_CONCURRENCIES": "1",
    "JOB_QUEUE_FETCH_INTERVAL": str(FETCH_INTERVAL_MS),
    "JOB_QUEUE_CLAIM_LEASE_MS": str(CLAIM_LEASE_MS),
    "JOB_QUEUE_WORKER_LEASE_MS": "1000",
    "LOG_LEVEL": "INFO",
    "DASHBOARD_ADDR": "",  # parallel servers would all want its default port
    "PLUGINS_RUNNER_DIR": str(PLUGINS_DIR),
}
CHANNELS = (None, "single")  # None = the default channel


class ServerDown(Exception):
    """The server process exited on its own (crash), outside a commanded stop."""


class InvariantServer:
    """One all-in-one server and its storage, restartable in place."""

    def __init__(self, workdir: Path, mode: str, storage_env: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir
        self.mode = mode  # "standalone" | "scalable"
        self.fault_dir = workdir / "faults"
        self.fault_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            # JWTEST_SERVER_ROOT: run the server code of another tree (e.g. an exported older commit)
            # under this checker; faulty_server.py itself imports nothing from tests/.
            "PYTHONPATH": os.environ.get("JWTEST_SERVER_ROOT", str(REPO_ROOT)),
            "SQLITE_DBNAME": str(workdir / "jobworkerp.sqlite3"),
            "JWTEST_FAULT_DIR": str(self.fault_dir),
            **SERVER_ENV,
            **(storage_env or {}),
        }
        self.port = 0
        self.generation = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_file = None
        self._armed_count = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    # --- process control (blocking; call through trio.to_thread) ---------------------------
    def start_blocking(self) -> None:
        self.port = free_port()
        self.starts += 1
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process ends
        self._log_file.write(f"\n===== start #{self.starts} on port {self.port} =====\n".encode())
        self._log_file.flush()
        env = {**self.env, "GRPC_ADDR": f"127.0.0.1:{self.port}"}
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("faulty_server.py")), "all-in-one",
             "--env-file", str(self.workdir / "none.env")],
            cwd=self.workdir, env=env, stdout=self._log_file, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.proc.kill()
                    raise RuntimeError(f"server did not start in {STARTUP_TIMEOUT_S}s:\n{self.log_tail()}") from None
                time.sleep(0.05)
        self.generation += 1

    def stop_blocking(self, kill: bool) -> int:
        """SIGKILL (`kill`) or SIGTERM and wait for the graceful exit; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(f"server did not stop within {STOP_TIMEOUT_S}s after SIGTERM") from None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode

    # --- async API -----------------------------------------------------------------------
    async def start(self) -> None:
        await trio.to_thread.run_sync(self.start_blocking)

    async def stop(self, kill: bool = False) -> int:
        return await trio.to_thread.run_sync(self.stop_blocking, kill)

    async def restart(self, kill: bool) -> int:
        """Stop (SIGTERM or SIGKILL) and start again on the same storage; returns the exit code."""
        code = await self.stop(kill)
        await self.start()
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def arm_faults(self, ops: list[str]) -> bool:
        """Make the next call of each op fail once; True once the server confirmed it."""
        if not self.alive():
            return False
        assert self.proc is not None
        ready = self.fault_dir / f"ready-{self.proc.pid}"
        with trio.move_on_after(10):
            while not ready.exists():  # noqa: ASYNC110 - another process writes it; SIGUSR1 before would kill it
                await trio.sleep(0.01)
        if not ready.exists() or not self.alive():
            return False
        self._armed_count += 1
        line = f"{' '.join(ops)} #{self._armed_count}"
        (self.fault_dir / "arm").write_text(line + "\n")
        self.proc.send_signal(signal.SIGUSR1)
        with trio.move_on_after(10):
            while True:
                armed = self.fault_dir / "armed"
                if armed.exists() and armed.read_text().strip() == line:
                    return True
                await trio.sleep(0.01)
        return False

    def fired_faults(self) -> list[str]:
        fired = self.fault_dir / "fired"
        return fired.read_text().split() if fired.exists() else []

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def services_available() -> str | None:
    """None when Redis and MariaDB answer on their TCP ports, else what is missing."""
    missing = []
    for name, port in (("Redis", 6379), ("MariaDB", 3306)):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            missing.append(f"{name} on 127.0.0.1:{port}")
    return ", ".join(missing) or None


@contextmanager
def storage_env(mode: str) -> Iterator[dict[str, str]]:
    """Standalone: nothing (SQLite lives in the workdir). Scalable: a private MySQL database and
    Redis key prefix for this run, dropped afterwards (the same helper the multi-process tests use)."""
    if mode == "standalone":
        yield {"STORAGE_TYPE": "Standalone"}
        return
    from tests.scalable.services import scalable_env

    with scalable_env() as env:
        yield {**env, **SERVER_ENV}
