"""Test-only server entry point: the real all-in-one server with storage faults on command.

`python tests/invariants/faulty_server.py all-in-one --env-file F` runs `jobworkerp.app.run_server`
exactly as `jobworkerp all-in-one` does, except that the `Storage` bundle it opens is wrapped:
`queue.pop`, `queue.ack`, `bus.publish` and `status.set` can be told to fail their NEXT call
once, with an exception, before reaching the real driver.

Commanding it is deliberately simple and deterministic: the test writes a line of op names
(e.g. `queue.pop bus.publish`) to `$JWTEST_FAULT_DIR/arm`, then sends SIGUSR1. The handler reads
the file, arms those ops, and writes the same line to `$JWTEST_FAULT_DIR/armed` so the test knows
the faults are in place. Each fault that fires appends `<op>` to `$JWTEST_FAULT_DIR/fired`.
Only the storage of this test process is wrapped; the production entry point is untouched.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

# Run as a script, Python puts this directory first on sys.path; nothing here may shadow a module.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

FAULTABLE = ("queue.pop", "queue.ack", "bus.publish", "status.set")

log = logging.getLogger("jobworkerp.faults")


class InjectedFault(RuntimeError):
    """The storage call a test asked to fail."""


class FaultPlan:
    """Which ops fail on their next call; armed from the control file on SIGUSR1."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.armed: set[str] = set()

    def load(self) -> None:
        """Arm the ops named in `arm` (runs in the SIGUSR1 handler, between bytecodes)."""
        line = (self.directory / "arm").read_text().strip()
        names = {name for name in line.split() if name in FAULTABLE}
        self.armed |= names
        (self.directory / "armed").write_text(line + "\n")

    def take(self, op: str) -> None:
        """Fail this call if `op` is armed (once), recording that it fired."""
        if op in self.armed:
            self.armed.discard(op)
            with open(self.directory / "fired", "a") as fired:
                fired.write(op + "\n")
            log.warning("injected fault: %s fails", op)
            raise InjectedFault(f"injected fault in {op}")


class _Proxy:
    """Forwards everything to the real driver except the faultable methods named in `faulty`."""

    def __init__(self, real: Any, plan: FaultPlan, prefix: str, faulty: dict[str, str]) -> None:
        """`faulty`: method name -> the op (of FAULTABLE, without the prefix) that fails it."""
        self._real = real
        self._plan = plan
        self._prefix = prefix
        self._faulty = faulty

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in self._faulty:
            return attr
        plan, op = self._plan, f"{self._prefix}.{self._faulty[name]}"

        async def faulty_call(*args: Any, **kwargs: Any) -> Any:
            plan.take(op)
            return await attr(*args, **kwargs)

        return faulty_call


def wrap_storage(storage: Any, plan: FaultPlan) -> Any:
    """The same bundle with queue / bus / status behind fault proxies (worker events untouched)."""
    return replace(
        storage,
        queue=_Proxy(storage.queue, plan, "queue", {"pop": "pop", "ack": "ack"}),
        bus=_Proxy(storage.bus, plan, "bus", {"publish": "publish"}),
        # A new queued job's status is written with set_ahead: the same fault covers both.
        status=_Proxy(storage.status, plan, "status", {"set": "set", "set_ahead": "set"}),
    )


def install(plan: FaultPlan) -> None:
    """Make `jobworkerp.app.run_server` open wrapped storage (this process only)."""
    import jobworkerp.app as app

    real_open = app.open_storage

    @asynccontextmanager
    async def open_faulty_storage(config: Any) -> AsyncIterator[Any]:
        async with real_open(config) as storage:
            yield wrap_storage(storage, plan)

    app.open_storage = open_faulty_storage
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: plan.load())
    # Only now may the test signal this process: SIGUSR1's default action would kill it.
    (plan.directory / f"ready-{os.getpid()}").touch()


def main(argv: list[str] | None = None) -> int:
    """`jobworkerp MODE` itself (same arguments, logging, signals and exit codes), after arming
    the storage wrapper."""
    from jobworkerp.cli.server import main as server_main

    install(FaultPlan(Path(os.environ["JWTEST_FAULT_DIR"])))
    return server_main(argv)


if __name__ == "__main__":
    sys.exit(main())
