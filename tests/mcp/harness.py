"""`jobworkerp mcp` as MCP clients meet it: a real process over stdio or streamable HTTP, driven by
the SDK's own `Client`, in front of a real jobworkerp server.

Scenarios are async functions run on asyncio (grpclib, used to set the server up and to look at
it, is an asyncio library) by `scenario()`, bounded in time. Waits are on conditions with
generous deadlines; nothing here measures how long anything took.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO, TypeVar

import anyio
import httpx2
import mcp.types as types
from mcp import Client, StdioServerParameters
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.proto.jobworkerp.runner import CommandRunnerSettings
from jobworkerp.testing.server import Client as GrpcClient
from jobworkerp.testing.server import free_port

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
SCENARIO_LIMIT_S = 120.0
DEADLINE_S = 60.0  # for a condition that should hold soon (a poll, a deletion)
BEARER = "mcp-test-bearer"
TRANSPORTS = ["stdio", "http"]
ERAS = ["auto", "legacy"]  # auto: the SDK client picks 2026-07-28; legacy: the initialize handshake

# Poll often, so tests do not idle; nothing depends on the interval (waits have deadlines).
FAST = {"MCP_POLL_INTERVAL_MS": "200", "MCP_PROGRESS_INTERVAL_MS": "300", "LOG_LEVEL": "INFO"}


def scenario(fn: Callable[[], Awaitable[T]], limit: float = SCENARIO_LIMIT_S) -> T:
    """Run `fn` on asyncio, on a thread of its own: the test process also runs trio tests, and
    sniffio's per-thread "running library" can be left set to trio there, which would make anyio
    take this asyncio loop for trio."""
    async def bounded() -> T:
        with anyio.fail_after(limit):
            return await fn()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mcp-scenario") as pool:
        return pool.submit(anyio.run, bounded, backend="asyncio").result()


def mcp_command(grpc_port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jobworkerp", "mcp", "--address", f"http://127.0.0.1:{grpc_port}", *extra]


class McpHttpProcess:
    """`jobworkerp mcp --http` on a free port, for clients to connect to."""

    def __init__(self, workdir: Path, grpc_port: int, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / "mcp-http.log"
        self.env = {**os.environ, **FAST, "MCP_ADDR": f"127.0.0.1:{self.port}", "MCP_AUTH_TOKEN": BEARER,
                    **(env or {})}
        self.grpc_port = grpc_port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> McpHttpProcess:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(mcp_command(self.grpc_port, "--http"), cwd=self.workdir, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"jobworkerp mcp --http did not start:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"jobworkerp mcp --http did not stop:\n{self.log()}") from None
        self._log.close()
        return code


class Endpoint:
    """Where a test's MCP clients connect: a stdio process per client, or one HTTP process."""

    def __init__(self, transport: str, grpc_port: int, workdir: Path, http: McpHttpProcess | None) -> None:
        self.transport = transport
        self.grpc_port = grpc_port
        self.workdir = workdir
        self.http = http

    @asynccontextmanager
    async def client(self, era: str = "auto",
                     message_handler: Callable[[IncomingMessage], Awaitable[None]] | None = None,
                     env: Mapping[str, str] | None = None) -> AsyncIterator[Client]:
        """A connected client; `env` (MCP_* for the process) only over stdio, where each client
        has a process of its own."""
        server: Any
        if self.transport == "stdio":
            server = StdioServerParameters(command=sys.executable, args=mcp_command(self.grpc_port)[1:],
                                           env={**FAST, **(env or {})}, cwd=str(self.workdir))
            with _append(self.workdir / "mcp-stdio.log") as errlog:
                async with Client(_stdio(server, errlog), mode=era, message_handler=message_handler) as client:
                    yield client
            return
        assert self.http is not None and env is None
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {BEARER}"},
                                      timeout=httpx2.Timeout(30, read=300)) as http_client:
            transport = streamable_http_client(self.http.url, http_client=http_client)
            async with Client(transport, mode=era, message_handler=message_handler) as client:
                yield client


def _append(path: Path) -> TextIO:
    """The process's stderr, kept beside the test (opened outside the event loop's way)."""
    return path.open("a")


def _stdio(params: StdioServerParameters, errlog: Any) -> Any:
    """The SDK's stdio transport with the process's stderr kept in the test's directory."""
    from mcp.client.stdio import stdio_client

    return stdio_client(params, errlog=errlog)


# --------------------------------------------------------------------------------------- gRPC side

async def runner_id(grpc: GrpcClient, name: str) -> int:
    runners = [r async for r in grpc.runner.find_list(svc.FindListRequest())]
    return next(r.id.value for r in runners if r.data.name == name)


def command_settings(executable: str) -> bytes:
    return bytes(CommandRunnerSettings(name=executable))


NO_RETRY = data.RetryPolicy(type=data.RetryType.NONE, max_retry=0, basis=2.0)


async def create_worker(grpc: GrpcClient, name: str, runner: int, settings: bytes,
                        response_type: data.ResponseType, **extra: Any) -> int:
    fields: dict[str, Any] = {"retry_policy": NO_RETRY, "store_success": True, "store_failure": True, **extra}
    worker = data.WorkerData(name=name, runner_id=data.RunnerId(value=runner), runner_settings=settings,
                             response_type=response_type, **fields)
    return (await grpc.worker.create(worker)).id.value


async def wait_until(check: Callable[[], Awaitable[bool]], what: str, deadline: float = DEADLINE_S) -> None:
    with anyio.move_on_after(deadline):
        while not await check():  # noqa: ASYNC110 - the server's state, seen over gRPC, is the only signal
            await anyio.sleep(0.05)
        return
    raise AssertionError(f"not within {deadline} s: {what}")


class ListChanges:
    """Counts `notifications/tools/list_changed` a handshake-era client receives (its
    `message_handler`), and waits for more."""

    def __init__(self) -> None:
        self.count = 0
        self._more = anyio.Event()

    async def handler(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.count += 1
            self._more.set()
            self._more = anyio.Event()

    async def beyond(self, count: int) -> None:
        while self.count <= count:
            await self._more.wait()

    async def prime(self, grpc: GrpcClient, name: str) -> int:
        """Make sure list changes reach the client before a test relies on one. Over streamable
        HTTP they travel on a GET stream the client opens by itself once initialized, and one sent
        before it is open is lost: so create a worker and, until a notification comes, touch it
        again. The worker is kept (a deletion would be one more change); its id is returned."""
        seen = self.count
        worker_id = await create_worker(grpc, name, 1, command_settings("true"), data.ResponseType.DIRECT)
        with anyio.fail_after(DEADLINE_S):
            for attempt in range(1, 10_000):
                with anyio.move_on_after(2):
                    await self.beyond(seen)
                if self.count > seen:
                    return worker_id
                worker = (await grpc.worker.find(data.WorkerId(value=worker_id))).data
                worker.data.runner_settings = command_settings("true" if attempt % 2 == 0 else "false")
                await grpc.worker.update(worker)
        raise AssertionError("unreachable")


async def job_gone(grpc: GrpcClient, job_id: int) -> bool:
    return (await grpc.job_status.find(data.JobId(value=job_id))).status is None


async def stored_statuses(grpc: GrpcClient, job_id: int) -> list[data.ResultStatus]:
    request = svc.FindListByJobIdRequest(job_id=data.JobId(value=job_id))
    return [r.data.status async for r in grpc.job_result.find_list_by_job_id(request)]
