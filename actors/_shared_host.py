"""Parent side of a shared runner host: many calls in flight on one process.

The host runs each call on a thread of its own (``_host_main --shared``). Requests and replies
name their call outside the pickle (``_framing.SHARED_HEAD``), so one reader task hands every
reply to its caller, and a caller unpickles only its own reply. Callers do not write to the pipe
themselves: they post their frames, and one writer task sends all the frames posted during a
turn of the event loop in one write (each write wakes the host: under load, one write per call
was a fifth of the server's time). Posting is synchronous, so a cancelled caller can never leave
half a frame on the pipe.

What a host's death or a cancel does here differs from an exclusive host:

* the host dies: every call it had fails with the crash report (:class:`HostCrashed`); calls on
  other hosts are untouched;
* a caller is cancelled: its host keeps running its other calls. The parent sends a cancel
  request (the call's hook runs in the host, :mod:`actors.hosted`) and forgets the call. A call
  whose reply has not come back ``cancel_grace`` seconds later did not stop: the host is
  *retired* — it gets no new calls and is killed once the calls still waited for are over —
  so a call that ignores its cancel cannot keep a thread (and what it holds) forever;
* a memory limit: processes a call reported starting (:func:`actors.hosted.started_process`)
  are held to it one by one, and one over it is killed and fails only its call
  (:meth:`SharedHost.kill_process_of_call`); the host with anything else counts as one.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import trio

from actors import _framing
from actors._emitted import Taker
from actors._host import RETIRED, Host, HostCrashed, HostEOF
from actors.hosted import kill_tree

__all__ = ["SharedHost"]


class _Call:
    """One call in flight: its caller waits on ``done``."""

    __slots__ = ("done", "error", "kill_reason", "on_emit", "pids", "reply")

    def __init__(self, on_emit: Taker | None = None) -> None:
        self.done = trio.Event()
        self.reply: bytes | None = None
        self.error: BaseException | None = None
        self.pids: list[int] = []  # processes the call started
        self.kill_reason: str | None = None  # set when the pool killed one of them
        self.on_emit = on_emit  # takes the chunks the call emits (`_emitted.py`)


class SharedHost:
    """One shared host process and the calls it runs; see the module docstring."""

    def __init__(self, host: Host, nursery: trio.Nursery, cancel_grace: float) -> None:
        self.host = host
        self._nursery = nursery
        self._cancel_grace = cancel_grace
        self._calls: dict[int, _Call] = {}
        self._processes: dict[int, _Call] = {}  # pid -> the call that started it
        self._waited = 0  # calls whose callers still wait (abandoned ones excluded)
        self._outbox: list[bytes] = []  # frames posted since the writer last wrote
        self._mail = trio.Event()  # set when the outbox has frames
        self.retired = False

    @property
    def usable(self) -> bool:
        """Whether new calls may go to this host."""
        host = self.host
        return not (self.retired or host.stop_requested or host.gone.is_set())

    async def call(self, call_id: int, request: bytes,
                   on_emit: Callable[[bytes], None] | None = None) -> tuple[bool, Any]:
        """Send ``request`` (a pickled ``(call_id, fn, args, kwargs, emits)``) and wait for the
        reply; chunks the call emits meanwhile go to ``on_emit``.

        Returns ``(ok, value)``; raises the crash report if the host dies first, or
        ``RuntimeError`` if the reply does not unpickle (the host is then killed: it wrote
        something else than replies on its protocol pipe).
        """
        call = _Call(None if on_emit is None else Taker(on_emit, f"{self.host.pool_name} call {call_id}"))
        self._calls[call_id] = call
        self._waited += 1
        try:
            self._post(_framing.encode_frame(_framing.SHARED_HEAD.pack(call_id, _framing.RUN) + request))
            await call.done.wait()
        except BaseException:
            if not call.done.is_set():
                self._abandon(call_id, call)
            raise
        finally:
            self._waited -= 1
            self._stop_if_drained()
        if call.error is not None:
            raise call.error
        if call.kill_reason is not None:
            raise HostCrashed(f"runner host (pid {self.host.pid}) {call.kill_reason}", None, "SIGKILL", "")
        assert call.reply is not None
        try:
            reply_id, ok, value = pickle.loads(call.reply)
        except Exception as exc:
            self.host.kill("it sent a reply that could not be unpickled", RETIRED)
            raise RuntimeError(f"could not unpickle the reply of the runner host: {exc!r}") from exc
        if reply_id != call_id:
            self.host.kill(f"it answered call {call_id} with the reply of call {reply_id}", RETIRED)
            raise RuntimeError(f"runner host answered call {reply_id}, expected {call_id}")
        return ok, value

    def _post(self, frame: bytes) -> None:
        """Queue ``frame`` for the writer."""
        self._outbox.append(frame)
        self._mail.set()

    async def _write_requests(self) -> None:
        """Send what was posted, all of a turn's frames in one write, until the pipe breaks (then
        the reader sees the end too and fails every call with the report)."""
        try:
            while True:
                await self._mail.wait()
                self._mail = trio.Event()
                frames, self._outbox = self._outbox, []
                await self.host.send(frames[0] if len(frames) == 1 else b"".join(frames))
        except HostEOF:
            pass

    def _abandon(self, call_id: int, call: _Call) -> None:
        """The caller left: ask the host to cancel the call, and retire the host if it does not
        stop within the grace. What the call still emits meanwhile is dropped."""
        call.on_emit = None
        if self.host.gone.is_set() or self.host.stop_requested:
            self._calls.pop(call_id, None)
            return
        self._post(_framing.encode_frame(_framing.SHARED_HEAD.pack(call_id, _framing.CANCEL)))
        self._nursery.start_soon(self._give_up_after_grace, call, name=f"{self.host.pool_name}-cancel")

    async def _give_up_after_grace(self, call: _Call) -> None:
        with trio.move_on_after(self._cancel_grace):
            await call.done.wait()
        if not call.done.is_set():
            self.retire()

    def retire(self) -> None:
        """Give this host no new calls; kill it once no caller waits on it."""
        self.retired = True
        self._stop_if_drained()

    def _stop_if_drained(self) -> None:
        if self.retired and self._waited == 0:
            self.host.stop(RETIRED)

    async def serve(self) -> None:
        """Write requests and read replies for the host's whole life (runs in the pool's
        nursery); once it is gone, fail the calls left with its crash report."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_requests)
            await self._read_replies()
            nursery.cancel_scope.cancel()
        self.fail_all(self.host.crash_error("while running the call"))

    async def _read_replies(self) -> None:
        """Hand each reply to its call until the host's pipe closes and the host is gone."""
        head = _framing.SHARED_HEAD
        try:
            while True:
                payload = await self.host.read_frame()
                call_id, kind = head.unpack_from(payload)
                if kind == _framing.EMIT:
                    emitting = self._calls.get(call_id)
                    if emitting is not None and emitting.on_emit is not None:
                        emitting.on_emit(payload[head.size:])
                    continue
                if kind == _framing.PROCESS:
                    self._started_process(call_id, _framing.PID.unpack_from(payload, head.size)[0])
                    continue
                call = self._calls.pop(call_id, None)
                if call is None:
                    continue  # a call nobody waits for any more (or a stray frame)
                for pid in call.pids:
                    self._processes.pop(pid, None)
                call.reply = payload[head.size:]
                call.done.set()
        except HostEOF:
            pass
        except Exception as exc:  # e.g. a frame too short for a call id: the pipe is not ours
            self.host.kill(f"its protocol pipe carried something else than replies ({exc!r})", RETIRED)
        await self.host.gone.wait()

    def _started_process(self, call_id: int, pid: int) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            call.pids.append(pid)
            self._processes[pid] = call

    def owns_process(self, pid: int) -> bool:
        """Whether ``pid`` (a child of the host) was started by a call still running."""
        return pid in self._processes

    def kill_process_of_call(self, pid: int, reason: str) -> None:
        """Kill process ``pid`` and what it started; its call fails with ``reason`` (the call's
        code sees the process die and reports whatever it makes of that: its reply is replaced)."""
        call = self._processes.get(pid)
        if call is None:
            return
        if call.kill_reason is None:
            call.kill_reason = f"killed process {pid} of this call: {reason}"
        kill_tree(pid)

    def fail_all(self, error: BaseException) -> None:
        """Fail every call still in flight with ``error``."""
        self._processes.clear()
        calls, self._calls = self._calls, {}
        for call in calls.values():
            call.error = error
            call.done.set()
