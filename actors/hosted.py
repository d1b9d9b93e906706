"""What code running inside a runner host may ask of it: to be told when its call is cancelled,
and to send output to its caller while it runs (`emit`).

A host started for :meth:`actors.ProcessPool.run_shared` runs many calls at once, each on a
thread of its own. A cancelled call there cannot be ended by killing the process (that would
fail the host's other calls), so the parent sends a cancel request instead, and the host runs
the hook the call registered with :func:`on_cancel` — from another thread, while the call
still runs: a hook must be thread-safe and quick (kill a child process, set an event, close a
connection). A call that registered nothing, or whose hook does not end it, keeps running; the
pool stops giving that host new calls and kills it once its other calls are over.

In an exclusive host (:meth:`actors.ProcessPool.run`) a cancelled call's host is killed, so
:func:`on_cancel` does nothing there.

A call whose caller passed ``on_emit`` to the pool may :func:`emit` chunks of bytes: each goes to
the parent at once, as a frame of its own, and reaches ``on_emit`` before the call's reply, in the
order emitted. Only the thread running the call may emit (a thread it starts has no call). For a
caller that passed no ``on_emit``, :func:`emit` does nothing and :func:`emitting` is False, so
code can skip preparing output nobody takes. The write blocks while the pipe to the parent is
full: a call emitting faster than the parent reads is slowed down, never buffered without bound.

This module is imported by the host process: it must stay free of trio.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["CallTable", "cancelled", "child_pids", "current_calls", "emit", "emitting", "emitting_to", "kill_tree",
           "on_cancel", "started_process"]

# Cancels that arrived before their call began (the request still queued for a thread), kept so
# the call does not start at all. Bounded: a cancel for a call that already ended is never used.
_EARLY_CANCELS_MAX = 4096


class CallTable:
    """The calls a shared host is running, their cancel hooks, and which were cancelled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: dict[int, list[Callable[[], None]]] = {}
        self._cancelled: set[int] = set()
        self._early: OrderedDict[int, None] = OrderedDict()
        self._local = threading.local()
        # Set by a shared host's serving loop: tells the parent which call started a process.
        self.report_process: Callable[[int, int], None] | None = None

    def begin(self, call_id: int) -> bool:
        """Register the calling thread as running ``call_id``; False if it was cancelled already."""
        with self._lock:
            if call_id in self._early:
                del self._early[call_id]
                return False
            self._hooks[call_id] = []
        self._local.call_id = call_id
        return True

    def end(self, call_id: int) -> None:
        """The call is over (its reply is about to be sent)."""
        self._local.call_id = None
        with self._lock:
            self._hooks.pop(call_id, None)
            self._cancelled.discard(call_id)

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` if the current thread's call is cancelled (at once if it already was)."""
        call_id = getattr(self._local, "call_id", None)
        if call_id is None:
            return
        with self._lock:
            hooks = self._hooks.get(call_id)
            run_now = call_id in self._cancelled
            if hooks is not None and not run_now:
                hooks.append(hook)
        if run_now:
            hook()

    def cancelled(self) -> bool:
        """Whether the current thread's call has been cancelled."""
        call_id = getattr(self._local, "call_id", None)
        with self._lock:
            return call_id is not None and call_id in self._cancelled

    def started_process(self, pid: int) -> None:
        """The current thread's call started process ``pid``: tell the parent."""
        call_id = getattr(self._local, "call_id", None)
        report = self.report_process
        if call_id is not None and report is not None:
            report(call_id, pid)

    def cancel(self, call_id: int) -> None:
        """Cancel ``call_id``: run its hooks, or keep the cancel for a call not yet begun."""
        with self._lock:
            hooks = self._hooks.get(call_id)
            if hooks is None:
                self._early[call_id] = None
                while len(self._early) > _EARLY_CANCELS_MAX:
                    self._early.popitem(last=False)
                return
            self._cancelled.add(call_id)
            run = list(hooks)
        if run:
            # On a thread of its own: a hook may take a while (removing a container), and the
            # host's reader must go on reading the other calls' requests meanwhile.
            threading.Thread(target=_run_hooks, args=(run,), name=f"cancel-{call_id}", daemon=True).start()


def _run_hooks(hooks: list[Callable[[], None]]) -> None:
    for hook in hooks:
        try:
            hook()
        except Exception:  # a failing hook must not stop the others
            pass


_CALLS = CallTable()


def current_calls() -> CallTable:
    """The host's call table (used by the host's own serving loop)."""
    return _CALLS


def on_cancel(hook: Callable[[], None]) -> None:
    """Ask the host to run ``hook`` if the parent cancels the call this thread is running."""
    _CALLS.on_cancel(hook)


def cancelled() -> bool:
    """Whether the parent cancelled the call this thread runs (always False in an exclusive host).

    A hook registered with :func:`on_cancel` runs once; code that starts something the hook must
    stop (a process) checks this right after starting it, in case the cancel came in between.
    """
    return _CALLS.cancelled()


def started_process(pid: int) -> None:
    """Say that the call this thread runs started process ``pid``.

    In a shared host, a pool with a memory limit then holds that process (and what it starts) to
    the limit on its own: one over it is killed and fails only this call, naming the limit —
    instead of counting towards the host, whose death would fail every call it runs. Nothing to
    do in an exclusive host, whose whole tree belongs to its one call.
    """
    _CALLS.started_process(pid)


# The calling thread's way to send a chunk to its caller, while it runs a call whose caller takes
# them (set by the host around the call, `_host_calls`); absent otherwise.
_emitter = threading.local()


@contextmanager
def emitting_to(send: Callable[[bytes], None]) -> Iterator[None]:
    """While inside, :func:`emit` on this thread hands its chunks to ``send`` (used by the host
    around a call whose caller takes them)."""
    _emitter.send = send
    try:
        yield
    finally:
        _emitter.send = None


def emitting() -> bool:
    """Whether the caller of the call this thread runs takes its output as it comes."""
    return getattr(_emitter, "send", None) is not None


def emit(chunk: bytes) -> None:
    """Send ``chunk`` to the caller now, as output of the call this thread runs; nothing when the
    caller takes no output (see the module docstring), or for an empty chunk."""
    send = getattr(_emitter, "send", None)
    if send is not None and chunk:
        send(bytes(chunk))


_TREE_MAX = 256  # processes looked at under one, at most


def child_pids(pid: int) -> list[int]:
    """The processes ``pid`` started, from /proc (Linux), thread by thread: a child started from a
    worker thread is listed under that thread only. Empty once ``pid`` is gone."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", "rb") as children:
                found.extend(int(child) for child in children.read().split())
    except (OSError, ValueError):
        pass  # gone meanwhile
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process it started, found through /proc (Linux).

    In a shared host, a cancelled call's processes cannot be killed with the host's process
    group (the host's other calls run in it too); this kills exactly what the call started.
    Every pid is collected before any is killed, so none is missed by being re-parented.
    """
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < _TREE_MAX:
        current = todo.pop()
        found.append(current)
        todo.extend(child_pids(current))
    for victim in found:
        try:
            os.kill(victim, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
