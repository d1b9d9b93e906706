"""Start the real all-in-one server as a subprocess on a free port, and talk to it over gRPC.

End-to-end tests are plain (sync) pytest functions that run an asyncio scenario with the
generated betterproto2 stubs, exactly as an external client would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext
from typing import Any, TypeVar

from grpclib.client import Channel

from jobworkerp.client.fair_channel import FairChannel
from jobworkerp.proto.jobworkerp import ext
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.wire_codec import MessageCodec

T = TypeVar("T")
STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One `python -m jobworkerp MODE` with its own SQLite file (Standalone) and port."""

    def __init__(self, workdir: Path, env: Mapping[str, str] | None = None, mode: str = "all-in-one",
                 name: str = "server", host: str = "127.0.0.1", split_stderr: bool = False,
                 dashboard: bool = False) -> None:
        """`host` is the bind address (GRPC_ADDR's host); readiness is probed on 127.0.0.1, so a
        wildcard bind works too. With `split_stderr`, stderr goes to `stderr_path` instead of the
        log (which then has stdout alone). The web dashboard is off (DASHBOARD_ADDR empty: servers
        of parallel tests would all want its default port) unless `dashboard` asks for it on a
        free port (`dashboard_port`)."""
        self.workdir = workdir
        self.mode = mode
        self.port = free_port()
        self.dashboard_port = free_port() if dashboard else None
        self.log_path = workdir / f"{name}.log"
        self.stderr_path = workdir / f"{name}.stderr" if split_stderr else None
        self.env = {
            **os.environ,
            "GRPC_ADDR": f"{host}:{self.port}",
            "SQLITE_DBNAME": str(workdir / "jobworkerp.sqlite3"),
            "WORKER_DEFAULT_CONCURRENCY": "4",
            "LOG_LEVEL": "INFO",
            "DASHBOARD_ADDR": f"127.0.0.1:{self.dashboard_port}" if self.dashboard_port else "",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._terminated = False

    def start(self) -> ServerProcess:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        stderr = self.stderr_path.open("wb") if self.stderr_path else None  # the child keeps its own copy
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jobworkerp", self.mode, "--env-file", str(self.workdir / "none.env")],
                cwd=self.workdir, env=self.env, stdout=self._log, stderr=stderr or subprocess.STDOUT,
            )
        finally:
            if stderr is not None:
                stderr.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._accepting():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"server did not start within {STARTUP_TIMEOUT_S}s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def _accepting(self) -> bool:
        """Ready: the gRPC port accepts, and so does the dashboard's when it was asked for (the
        server binds it after the gRPC port, so a test that reached for it at once was refused)."""
        if self.mode == "worker":  # no port: ready once it says so
            return b"serving jobs" in self.log_path.read_bytes()
        ports = [self.port] if self.dashboard_port is None else [self.port, self.dashboard_port]
        try:
            for port in ports:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        """Ask for a graceful shutdown (SIGTERM) once."""
        assert self.proc is not None
        if not self._terminated and self.proc.poll() is None:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the graceful exit, return the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"server did not stop within {timeout}s:\n{self.log()}") from None
        self._log.close()
        return self.proc.returncode


@dataclass
class Client:
    """The six service stubs and the bulk extension's over one HTTP/2 connection."""

    channel: Channel
    runner: svc.RunnerServiceStub
    worker: svc.WorkerServiceStub
    job: svc.JobServiceStub
    job_result: svc.JobResultServiceStub
    job_status: svc.JobStatusServiceStub
    job_restore: svc.JobRestoreServiceStub
    bulk: ext.BulkJobServiceStub


@asynccontextmanager
async def connect(port: int, ssl: SSLContext | None = None) -> AsyncIterator[Client]:
    """Stubs over one connection to 127.0.0.1:`port`; TLS with `ssl` (the context must offer
    ALPN h2, as grpclib's own default does)."""
    channel = FairChannel("127.0.0.1", port, ssl=ssl, codec=MessageCodec())
    try:
        yield Client(
            channel,
            svc.RunnerServiceStub(channel),
            svc.WorkerServiceStub(channel),
            svc.JobServiceStub(channel),
            svc.JobResultServiceStub(channel),
            svc.JobStatusServiceStub(channel),
            svc.JobRestoreServiceStub(channel),
            ext.BulkJobServiceStub(channel),
        )
    finally:
        channel.close()


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Run an asyncio client scenario from a sync test, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
