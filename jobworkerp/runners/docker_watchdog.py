"""No DOCKER runner container outlives its runner host: ownership labels, the watchdog, the sweep.

A timed-out job's host is SIGKILLed, so the host cannot clean up after itself. Instead, the first
container a host creates starts a watchdog process in its own session (out of reach of the
process-group kill) that blocks reading a pipe from the host. The kernel closes the pipe when the
host dies for any reason, and the watchdog then removes every container labelled with that host's
owner id: a timed-out job's container, and the static containers of a host that exits. As a second
line, the first load in each host also removes containers whose owner process on this machine no
longer exists (e.g. a watchdog killed too).

The watchdog runs as `python -m jobworkerp.runners.docker_watchdog OWNER_ID DOCKER_HOST`, started
isolated (`actors.isolation`: no working directory on its path, the default environment allowlist,
in `/`); it needs only the engine client, not the runner, and the engine address comes as an argument.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid

from actors.isolation import NEUTRAL_CWD, python_command, python_environment
from jobworkerp.runners.docker_api import Engine, EngineError, EngineUnreachable

OWNER_LABEL = "jobworkerp.owner"  # unique id of the runner host process that created the container
NODE_LABEL = "jobworkerp.node"  # that process's machine, and its pid and start time, for the sweep
PID_LABEL = "jobworkerp.pid"
PID_START_LABEL = "jobworkerp.pid-start"
WATCHDOG_CLEANUP_S = 30.0


def _process_start(pid: int) -> str:
    """Start time of `pid` in clock ticks since boot (tells a reused pid apart); "" when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]  # field 22 overall, counted after the command name


def _process_alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not start or _process_start(pid) in ("", start)


class _Owner:
    """This process's identity on the containers it creates, and its watchdog."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.id = f"{socket.gethostname()}-{self.pid}-{uuid.uuid4().hex[:12]}"
        self.labels = {
            OWNER_LABEL: self.id,
            NODE_LABEL: socket.gethostname(),
            PID_LABEL: str(self.pid),
            PID_START_LABEL: _process_start(self.pid),
        }
        self._watchdogs: dict[str, subprocess.Popen[bytes]] = {}
        self._swept: set[str] = set()
        self._lock = threading.Lock()

    def ensure_watchdog(self, docker_host: str) -> None:
        """Start (once per engine) the process that removes this process's containers when it dies."""
        with self._lock:
            watchdog = self._watchdogs.get(docker_host)
            if watchdog is not None and watchdog.poll() is None:
                return
            # Own session: the executor kills the host's whole process group on a timeout.
            # stdout/stderr to /dev/null: holding the host's stderr pipe would keep it open after the host died.
            self._watchdogs[docker_host] = subprocess.Popen(
                python_command("jobworkerp.runners.docker_watchdog", self.id, docker_host),
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, env=python_environment(), cwd=NEUTRAL_CWD,
            )

    def sweep_once(self, engine: Engine) -> None:
        """Remove containers of dead owner processes on this machine (first load per engine only)."""
        with self._lock:
            if engine.docker_host in self._swept:
                return
            self._swept.add(engine.docker_host)
        for container in engine.containers([f"{NODE_LABEL}={socket.gethostname()}"]):
            labels = container.get("Labels") or {}
            try:
                pid = int(labels.get(PID_LABEL, ""))
            except ValueError:
                continue
            if labels.get(OWNER_LABEL) != self.id and not _process_alive(pid, labels.get(PID_START_LABEL, "")):
                engine.remove(container["Id"])


_owner: _Owner | None = None


def owner() -> _Owner:
    """This process's owner; a forked child gets its own, so its containers go when it dies, not its parent."""
    global _owner
    if _owner is None or _owner.pid != os.getpid():
        _owner = _Owner()
    return _owner


def remove_owned(engine: Engine, owner_id: str) -> int:
    """Remove every container of `owner_id`; how many there were."""
    containers = engine.containers([f"{OWNER_LABEL}={owner_id}"])
    for container in containers:
        engine.remove(container["Id"])
    return len(containers)


def watchdog_main(owner_id: str, docker_host: str) -> int:
    """Block until the owner's pipe closes (it exited or was killed), then remove its containers."""
    while os.read(0, 4096):
        pass
    deadline = time.monotonic() + WATCHDOG_CLEANUP_S
    engine = Engine(docker_host)
    while True:
        try:
            remove_owned(engine, owner_id)
            return 0
        except (EngineError, EngineUnreachable):
            if time.monotonic() > deadline:
                return 1
            time.sleep(0.5)


def _main(argv: list[str]) -> int:
    if len(argv) == 2:
        return watchdog_main(argv[0], argv[1])
    print("usage: python -m jobworkerp.runners.docker_watchdog OWNER_ID DOCKER_HOST", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
