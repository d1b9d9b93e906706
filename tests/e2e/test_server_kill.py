"""After a SIGKILL of the server (all-in-one, Standalone) no runner host and no process a job
started survives (actors/_parent_watch.py: a host whose parent dies kills its own process group).

Found from outside, through /proc: the server's children are its runner hosts, and the job's
`sleep 600` is a child of one of them. The waits are polls bounded only by a hang guard."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, run

pytestmark = pytest.mark.timeout(300)
HANG_S = 120.0  # hang guard only: no timing is asserted


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent pid, start time) of a process, or None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "
    return fields[0], int(fields[1]), fields[19]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[1] == pid:
                kids.append(int(entry))
    return kids


def _wait_for(what: str, found: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG_S
    while not found():
        if time.monotonic() > deadline:
            raise AssertionError(f"hang guard: {what} after {HANG_S}s")
        time.sleep(0.1)


def test_sigkill_of_the_server_leaves_no_runner_host_and_no_job_process(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, {"WORKER_DEFAULT_CONCURRENCY": "1"}).start()
    assert server.proc is not None
    try:
        async def enqueue() -> None:
            async with connect(server.port) as c:
                await c.worker.create(data.WorkerData(
                    name="sleeper", runner_id=data.RunnerId(value=1), response_type=data.ResponseType.NO_RESULT,
                    runner_settings=bytes(runner_pb.CommandRunnerSettings(name="sleep"))))
                await c.job.enqueue(svc.JobRequest(worker_name="sleeper",
                                                   args=bytes(runner_pb.CommandArgs(args=["600"]))))

        run(enqueue())
        found: dict[str, int] = {}

        def job_running() -> bool:
            for host in _children(server.proc.pid):  # type: ignore[union-attr]
                for pid in _children(host):
                    if _comm(pid) == "sleep":
                        found.update(host=host, sleep=pid)
                        return True
            return False

        _wait_for("the job's sleep never started", job_running)
        started = {name: _stat(pid) for name, pid in found.items()}
        hosts = {pid: _stat(pid) for pid in _children(server.proc.pid)}
    except BaseException:
        server.proc.kill()
        raise

    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    server._log.close()

    def gone(pid: int, before: tuple[str, int, str] | None) -> bool:
        now = _stat(pid)
        # Gone, a zombie (dead, its reaper not there yet), or another process reusing the pid.
        return now is None or now[0] in ("Z", "X") or before is None or now[2] != before[2]

    _wait_for(f"the job's sleep {found['sleep']} outlived the server",
              lambda: gone(found["sleep"], started["sleep"]))
    for pid, before in hosts.items():
        _wait_for(f"runner host {pid} ({_comm(pid)}) outlived the server", lambda p=pid, b=before: gone(p, b))
