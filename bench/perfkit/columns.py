"""How each column's system is started and stopped, and how its driver is run.

A column yields a `Running`: the root processes whose trees are "the server" (CPU and memory
are summed over them) and the driver's target and interpreter. Every column is started afresh for
each concurrency it is measured at, since the peers' workers take their concurrency at start.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from jobworkerp.testing.server import ServerProcess, free_port

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
PLUGINS_DIR = ROOT / "plugins"
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 3.0


@dataclass
class Running:
    roots: list[int]
    target: str
    python: str
    port: int = 0
    logs: list[Path] = field(default_factory=list)


Start = Callable[["Options", int], AbstractContextManager[Running]]  # (options, concurrency)


@dataclass
class Options:
    workdir: Path
    redis_db: int
    poll_ms: float
    arq_python: str


def driver_env(opts: Options) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT)]),
            "BENCH_REDIS_DB": str(opts.redis_db), "BENCH_POLL_MS": str(opts.poll_ms)}


def _server_env(concurrency: int) -> dict[str, str]:
    return {"WORKER_DEFAULT_CONCURRENCY": str(concurrency), "PLUGINS_RUNNER_DIR": str(PLUGINS_DIR),
            "LOG_LEVEL": "INFO"}  # no per-job lines at INFO; a worker says "serving jobs" there


@contextmanager
def standalone(opts: Options, concurrency: int) -> Iterator[Running]:
    workdir = Path(tempfile.mkdtemp(dir=opts.workdir, prefix="standalone-"))
    server = ServerProcess(workdir, _server_env(concurrency)).start()
    try:
        yield Running([_pid(server)], "jobworkerp", sys.executable, server.port, [server.log_path])
    finally:
        server.stop()


@contextmanager
def scalable(opts: Options, concurrency: int) -> Iterator[Running]:
    """1 grpc-front + 1 worker on Redis + MariaDB, in a scratch database and key prefix."""
    from bench_all_in_one import scratch_storage

    workdir = Path(tempfile.mkdtemp(dir=opts.workdir, prefix="scalable-"))
    with scratch_storage("scalable") as storage_env, ExitStack() as stack:
        env = {**_server_env(concurrency), **storage_env}
        front = ServerProcess(workdir, env, mode="grpc-front", name="front").start()
        stack.callback(front.stop)
        worker = ServerProcess(workdir, env, mode="worker", name="worker").start()
        stack.callback(worker.stop)
        yield Running([_pid(front), _pid(worker)], "jobworkerp", sys.executable, front.port,
                      [front.log_path, worker.log_path])


@contextmanager
def echo(opts: Options, concurrency: int) -> Iterator[Running]:
    with _echo(opts, []) as running:
        yield running


@contextmanager
def echo_stack(opts: Options, concurrency: int) -> Iterator[Running]:
    """The same echo served on this server's stack (trio, the asyncio bridge, the front's protocol)."""
    with _echo(opts, ["--stack"]) as running:
        yield running


@contextmanager
def _echo(opts: Options, flags: list[str]) -> Iterator[Running]:
    port = free_port()
    with _process([sys.executable, "-m", "perfkit.echo", str(port), *flags], opts, "echo", {}) as proc:
        _wait_for_port(proc, port)
        yield Running([proc.pid], "echo", sys.executable, port)


def _peer(name: str, python: str, command: list[str]) -> Start:
    @contextmanager
    def start(opts: Options, concurrency: int) -> Iterator[Running]:
        _flush(opts.redis_db)
        try:
            with _process(command_for(python, command, concurrency), opts, name,
                          {"BENCH_CONCURRENCY": str(concurrency)}) as proc:
                yield Running([proc.pid], name, python)
        finally:
            _flush(opts.redis_db)

    return start


def command_for(python: str, command: list[str], concurrency: int) -> list[str]:
    """The peer's own command line (its console script next to `python`), concurrency filled in."""
    script = str(Path(python).parent / command[0])
    return [script, *(part.replace("{concurrency}", str(concurrency)) for part in command[1:])]


PEER_COMMANDS = {
    "arq": ["arq", "peers.arq_tasks.WorkerSettings"],
    "dramatiq": ["dramatiq", "peers.dramatiq_tasks", "--processes", "1", "--threads", "{concurrency}"],
    "taskiq": ["taskiq", "worker", "peers.taskiq_tasks:broker", "--workers", "1", "--max-async-tasks",
               "{concurrency}"],
}
PEER_MODULES = {"arq": "arq", "dramatiq": "dramatiq", "taskiq": "taskiq_redis"}


def peer_python(name: str, opts: Options) -> str:
    return opts.arq_python if name == "arq" else sys.executable


def peer_column(name: str, opts: Options) -> Start:
    python = peer_python(name, opts)
    return _peer(name, python, PEER_COMMANDS[name])


def missing_peer(name: str, opts: Options) -> str | None:
    """Why the peer cannot run here (not installed in its interpreter), or None."""
    python = peer_python(name, opts)
    if not Path(python).exists():
        return f"no interpreter {python}"
    probe = subprocess.run([python, "-c", f"import {PEER_MODULES[name]}"], capture_output=True, text=True,
                           env=driver_env(opts))
    if probe.returncode != 0:
        return f"not installed ({probe.stderr.strip().splitlines()[-1][:120] if probe.stderr.strip() else '?'})"
    return None


def _pid(server: ServerProcess) -> int:
    assert server.proc is not None
    return server.proc.pid


@contextmanager
def _process(command: list[str], opts: Options, name: str,
             extra_env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A worker or server in its own session (so its whole group can be ended), logged to a file."""
    log_path = opts.workdir / f"{name}-{int(time.time() * 1000)}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, env={**driver_env(opts), **extra_env}, stdout=log, stderr=subprocess.STDOUT,
                                cwd=BENCH, start_new_session=True)
        try:
            yield proc
        finally:
            _end_group(proc)


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after a short grace: the measured part is over, and the peers' own
    graceful shutdowns (waiting out consumer timeouts) would add seconds per column for nothing."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    try:  # anything the worker left behind in its group (taskiq's and dramatiq's children)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _wait_for_port(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"not listening on {port} after {START_TIMEOUT_S} s")


def _flush(db: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    try:
        client.flushdb()
    finally:
        client.close()


def mysql_available() -> str | None:
    return None if shutil.which("mysql") else "no mysql client on PATH (needed for the scratch database)"
