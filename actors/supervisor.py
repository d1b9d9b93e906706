"""one_for_one supervision with OTP-style restart intensity.

A crashing child is restarted on its own; its siblings keep running. If
children crash faster than ``max_restarts`` within ``max_seconds``, restarting
is clearly not helping, so the supervisor stops everything and escalates to
whoever runs it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import trio

__all__ = ["ChildSpec", "Supervisor", "SupervisorEscalation"]

logger = logging.getLogger("actors.supervisor")

RestartPolicy = Literal["permanent", "transient", "temporary"]


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child and when to restart it.

    ``start`` is an async function taking ``task_status`` (it is run like
    ``nursery.start(spec.start)``), so the supervisor can start children in
    order, each one ready before the next.

    ``restart``: ``permanent`` restarts on any exit, ``transient`` only when it
    raised, ``temporary`` never.
    """

    name: str
    start: Callable[..., Awaitable[None]]
    restart: RestartPolicy = "permanent"


class SupervisorEscalation(Exception):
    """The supervisor gave up: restart intensity exceeded or a child failed to start.

    ``child`` names the child that crashed last; its exception is ``__cause__``.
    """

    def __init__(self, supervisor: str, child: str, reason: str) -> None:
        super().__init__(supervisor, child, reason)
        self.supervisor = supervisor
        self.child = child
        self.reason = reason

    def __str__(self) -> str:
        return f"supervisor {self.supervisor!r} gave up on child {self.child!r}: {self.reason}"


class _StartedRecorder:
    """A task_status wrapper that remembers whether the child reported ready.

    The supervisor must tell "crashed while starting" (a configuration error,
    not worth retrying at boot) from "crashed later" (restart it).
    """

    def __init__(self, inner: trio.TaskStatus[Any], *, called: bool = False) -> None:
        self._inner = inner
        self.called = called

    def started(self, value: Any = None) -> None:
        self.called = True
        self._inner.started(value)


class Supervisor:
    """one_for_one supervision with OTP restart intensity (max_restarts within max_seconds), then escalate."""

    def __init__(
        self,
        children: Sequence[ChildSpec],
        *,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: str = "supervisor",
    ) -> None:
        if max_restarts < 0 or max_seconds <= 0:
            raise ValueError("max_restarts must be >= 0 and max_seconds > 0")
        self.name = name
        self._children = list(children)
        self._max_restarts = max_restarts
        self._max_seconds = max_seconds
        self._restart_times: deque[float] = deque()
        self._restarts = 0
        self._nursery: trio.Nursery | None = None
        self._escalation: SupervisorEscalation | None = None

    @property
    def restarts(self) -> int:
        """Total restarts so far (for tests and metrics)."""
        return self._restarts

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the children in order, supervise them, return when none is left.

        A supervisor created with no children runs until cancelled, so children
        added with :meth:`start_child` do not race its return.

        Raises :class:`SupervisorEscalation` after cancelling the remaining
        children when restart intensity is exceeded or a child fails to start.
        """
        if self._nursery is not None:
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        self._escalation = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for spec in self._children:
                    try:
                        await nursery.start(self._supervise, spec)
                    except Exception as exc:
                        logger.error("%s: child %r failed to start", self.name, spec.name, exc_info=exc)
                        self._escalate(spec, exc, "failed to start")
                        break
                else:
                    if not self._children:
                        # Created empty = a dynamic supervisor fed by start_child():
                        # stay up until cancelled instead of returning at once.
                        nursery.start_soon(trio.sleep_forever)
                    task_status.started()
        finally:
            self._nursery = None
        if self._escalation is not None:
            raise self._escalation

    async def start_child(self, spec: ChildSpec) -> None:
        """Add and start a child at run time; its start-up error is raised here."""
        if self._nursery is None:
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        await self._nursery.start(self._supervise, spec)

    async def _supervise(self, spec: ChildSpec, *, task_status: trio.TaskStatus[None]) -> None:
        """Run one child, restarting it per its policy until told not to."""
        status = _StartedRecorder(task_status)
        while True:
            error: Exception | None = None
            try:
                await spec.start(task_status=status)
            except Exception as exc:
                # trio.Cancelled is a BaseException: a cancelled supervisor is not a crash.
                if not status.called:
                    raise  # fails nursery.start() in run()/start_child()
                error = exc
            if not status.called:
                raise RuntimeError(f"child {spec.name!r} exited without calling task_status.started()")
            if not self._should_restart(spec, error):
                logger.info("%s: child %r ended (%s), not restarting", self.name, spec.name, spec.restart)
                return
            if error is not None:
                logger.error("%s: child %r crashed", self.name, spec.name, exc_info=error)
            if not self._note_restart():
                self._escalate(spec, error, f"more than {self._max_restarts} restarts in {self._max_seconds} s")
                return
            logger.warning("%s: restarting child %r (restart #%d)", self.name, spec.name, self._restarts)
            # Nobody waits on a restart's task_status, and a restarted child that
            # dies before reporting ready is an ordinary crash, hence called=True.
            # The checkpoint stops a child that exits instantly from starving others.
            status = _StartedRecorder(trio.TASK_STATUS_IGNORED, called=True)
            await trio.lowlevel.checkpoint()

    @staticmethod
    def _should_restart(spec: ChildSpec, error: Exception | None) -> bool:
        if spec.restart == "permanent":
            return True
        if spec.restart == "transient":
            return error is not None
        return False

    def _note_restart(self) -> bool:
        """Record a restart now; False when intensity is exceeded (escalate instead)."""
        now = trio.current_time()
        window_start = now - self._max_seconds
        times = self._restart_times
        times.append(now)
        while times and times[0] <= window_start:
            times.popleft()
        if len(times) > self._max_restarts:
            return False
        self._restarts += 1
        return True

    def _escalate(self, spec: ChildSpec, error: Exception | None, reason: str) -> None:
        """Remember why we give up and cancel every child; run() raises afterwards."""
        if self._escalation is None:
            escalation = SupervisorEscalation(self.name, spec.name, reason)
            escalation.__cause__ = error
            self._escalation = escalation
            logger.error("%s: escalating: %s", self.name, escalation)
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
