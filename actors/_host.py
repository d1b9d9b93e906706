"""Parent-side handle of one runner host process.

Owns the process, its three pipes and its process group: spawning, the ready
handshake, the frame protocol, draining stderr into a
tail buffer, and a shutdown that always kills the whole group, reaps the
process and closes every pipe (trio 0.35's ``Process`` has no ``aclose``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import cast

import trio

from actors._emitted import read_reply_emitting
from actors._framing import HEADER, HEADER_SIZE, READY_PAYLOAD
from actors._tail import TailBuffer

__all__ = ["CANCELLED", "EXITED", "HOST_END_CAUSES", "Host", "HostCrashed", "HostEOF", "MEMORY_LIMIT", "RETIRED",
           "SIGNALLED", "STARTUP"]

logger = logging.getLogger("actors.process_pool")

RECEIVE_SIZE = 1 << 16
# Why a host ended (`ProcessPool.host_ends`). The pool names the cause when it ends a host on
# purpose; otherwise the exit status says it: the host exited by itself, or something else
# (the kernel's OOM killer, an operator) signalled it.
EXITED = "exit"  # exited by itself, with an exit code
SIGNALLED = "signal"  # killed by a signal the pool did not send
MEMORY_LIMIT = "memory_limit"  # killed by the pool: over its resident memory limit
CANCELLED = "cancel"  # killed by the pool: the caller of its call was cancelled (timeout, delete, stop)
RETIRED = "retired"  # ended by the pool: a cancelled call outlived its grace, or it broke the protocol
STARTUP = "startup"  # never became ready
HOST_END_CAUSES = (EXITED, SIGNALLED, MEMORY_LIMIT, CANCELLED, RETIRED, STARTUP)

# After the host exits, how long to let its last stderr bytes (faulthandler's
# report) arrive before building the crash report.
STDERR_SETTLE_SECONDS = 0.05


class HostCrashed(Exception):
    """The host died while running a call (or while starting).

    Attributes: ``returncode`` (int | None; negative = killed by a signal),
    ``signal_name`` (e.g. ``"SIGSEGV"`` or None) and ``stderr_tail`` (the last
    ~4 KB the host wrote to stderr, which includes faulthandler's report).
    ``str()`` starts with a one-line summary, then the stderr tail.
    """

    def __init__(
        self,
        message: str,
        returncode: int | None = None,
        signal_name: str | None = None,
        stderr_tail: str = "",
    ) -> None:
        # All four in args so the exception pickles and copies faithfully.
        super().__init__(message, returncode, signal_name, stderr_tail)
        self.message = message
        self.returncode = returncode
        self.signal_name = signal_name
        self.stderr_tail = stderr_tail

    def __str__(self) -> str:
        tail = self.stderr_tail.rstrip()
        if not tail:
            return self.message
        return f"{self.message}\n--- runner host stderr (tail) ---\n{tail}"


class HostEOF(Exception):
    """Internal: the host closed its protocol pipe (it died or is dying)."""


def describe_exit(returncode: int | None) -> tuple[str, str | None]:
    """Human wording for an exit status, plus the signal name when there is one."""
    if returncode is None:
        return "an unknown status", None
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"SIG{-returncode}"
        return f"signal {name} ({returncode})", name
    return f"code {returncode}", None


class Host:
    """One runner host process: one call at a time when exclusive (the pool guarantees it),
    many when shared (``_shared_host.py`` keeps their order on the pipe)."""

    def __init__(self, process: trio.Process, pool_name: str) -> None:
        assert process.stdin is not None and process.stdout is not None
        assert process.stderr is not None
        self.process = process
        self.pid: int = process.pid
        self.pool_name = pool_name
        self._stdin = cast("trio.lowlevel.FdStream", process.stdin)
        # Subprocess pipes are FdStreams on POSIX, whose receive_some returns bytes (the
        # ReceiveStream interface also allows bytearray).
        self._stdout = cast("trio.lowlevel.FdStream", process.stdout)
        self._stderr = cast("trio.lowlevel.FdStream", process.stderr)
        self._buffer = bytearray()
        self.tail = TailBuffer()
        self.stop_requested = False
        self.kill_reason: str | None = None  # why the pool killed it, when it did so on purpose
        self.end_cause: str | None = None  # the first cause the pool gave for ending it (see EXITED...)
        self.returncode: int | None = None
        self._reaped = False
        self._nursery: trio.Nursery | None = None
        self._kill_grace = 0.0
        self._stderr_done = trio.Event()
        self.gone = trio.Event()
        # A pidfd tells us the host exited *without* reaping it; while the zombie
        # holds the pid, killing its process group cannot hit a recycled pid.
        self._pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            self._pidfd = os.pidfd_open(self.pid)

    @classmethod
    async def spawn(cls, command: Sequence[str], env: Mapping[str, str], cwd: str, pool_name: str) -> Host:
        """Start the process in its own session (= its own process group), in ``cwd``."""
        process = await trio.lowlevel.open_process(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
        return cls(process, pool_name)

    # ----------------------------------------------------------------- lifetime

    async def live(
        self,
        nursery: trio.Nursery,
        startup_timeout: float,
        kill_grace: float,
        task_status: trio.TaskStatus[Host],
    ) -> None:
        """Handshake, report started, then wait for the process to end; always clean up.

        Raises :class:`HostCrashed` (after cleanup, so the report is complete)
        when the host does not become ready.
        """
        self._nursery = nursery
        self._kill_grace = kill_grace
        nursery.start_soon(self._drain_stderr)
        failure: str | None = None
        try:
            try:
                with trio.fail_after(startup_timeout):
                    ready = await self.read_frame()
                if ready != READY_PAYLOAD:
                    failure = "sent a malformed ready frame"
            except HostEOF:
                failure = "start-up"
            except trio.TooSlowError:
                failure = f"did not become ready within {startup_timeout:g} s"
            if failure is None:
                task_status.started(self)
                await self._wait_exit()
        finally:
            with trio.CancelScope(shield=True):
                await self._shutdown(kill_grace)
        if failure == "start-up":
            raise self.crash_error("during start-up")
        if failure is not None:
            raise HostCrashed(f"runner host (pid {self.pid}) {failure}", None, None, self.tail.text())

    async def _wait_exit(self) -> None:
        """Return once the process has exited, leaving it unreaped when possible."""
        if self._pidfd is not None:
            await trio.lowlevel.wait_readable(self._pidfd)
        else:
            await self._reap()

    async def _reap(self) -> None:
        self.returncode = await self.process.wait()
        self._reaped = True

    async def _shutdown(self, kill_grace: float) -> None:
        """Kill the group (politely first if a grace is set), reap, close everything."""
        if kill_grace > 0 and not self._reaped:
            self.signal_group(signal.SIGTERM)
            with trio.move_on_after(kill_grace):
                await self._wait_exit()
        # Also kills whatever the host spawned (same process group).
        self.signal_group(signal.SIGKILL)
        await self._reap()
        with trio.move_on_after(STDERR_SETTLE_SECONDS):
            await self._stderr_done.wait()
        for stream in (self._stdin, self._stdout, self._stderr):
            await stream.aclose()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self.gone.set()

    def signal_group(self, sig: signal.Signals) -> None:
        """Signal the host's process group, unless the host is already reaped."""
        if self._reaped:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self, cause: str | None = None) -> None:
        """Kill the host now (its state is unknown); cleanup continues in ``live``.

        With a kill grace the group gets SIGTERM first and SIGKILL once the grace
        is over, from a background task: whoever calls stop() never waits. ``cause``
        says why, unless the host already stopped or has a cause.
        """
        self._name_cause(cause)
        if self.stop_requested:
            return
        self.stop_requested = True
        if self._kill_grace > 0 and self._nursery is not None:
            self.signal_group(signal.SIGTERM)
            self._nursery.start_soon(self._kill_after_grace)
        else:
            self.signal_group(signal.SIGKILL)

    def kill(self, reason: str, cause: str) -> None:
        """Kill the host's group at once, with no grace (it broke a limit); `reason` becomes the
        crash report of the call it was running."""
        self._name_cause(cause)
        if self.kill_reason is None:
            self.kill_reason = reason
        self.stop_requested = True
        self.signal_group(signal.SIGKILL)

    def _name_cause(self, cause: str | None) -> None:
        """Keep the first cause given: the one that ended the host (a host that is already gone
        ended by itself, whatever is said afterwards)."""
        if cause is not None and self.end_cause is None and not self.stop_requested and not self.gone.is_set():
            self.end_cause = cause

    def ended_by(self) -> str:
        """Why the host ended; call once ``gone`` is set (exit status known)."""
        if self.end_cause is not None:
            return self.end_cause
        return SIGNALLED if self.returncode is not None and self.returncode < 0 else EXITED

    async def _kill_after_grace(self) -> None:
        with trio.move_on_after(self._kill_grace):
            await self.gone.wait()
        if not self.gone.is_set():
            self.signal_group(signal.SIGKILL)

    def crash_error(self, during: str) -> HostCrashed:
        """Build the crash report; call once ``gone`` is set (exit status known)."""
        wording, signal_name = describe_exit(self.returncode)
        what = f"was killed {during}: {self.kill_reason}" if self.kill_reason else f"exited with {wording} {during}"
        return HostCrashed(
            f"runner host (pid {self.pid}) {what}",
            self.returncode,
            signal_name,
            self.tail.text(),
        )

    # ------------------------------------------------------------------- stderr

    async def _drain_stderr(self) -> None:
        """Read stderr until EOF so a chatty call never blocks on a full pipe."""
        debug = logger.isEnabledFor(logging.DEBUG)
        try:
            while True:
                chunk = await self._stderr.receive_some(RECEIVE_SIZE)
                if not chunk:
                    return
                self.tail.write(chunk)
                if debug:
                    text = chunk.decode("utf-8", errors="replace").rstrip()
                    logger.debug("%s host %d stderr: %s", self.pool_name, self.pid, text)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return
        finally:
            self._stderr_done.set()

    # ----------------------------------------------------------------- protocol

    async def call(self, frame: bytes, on_emit: Callable[[bytes], None] | None = None) -> bytes:
        """Send one request frame and return the reply payload; HostEOF if it died. With
        ``on_emit``, the chunks the call emits before its reply are handed to it on the way."""
        await self.send(frame)
        if on_emit is None:
            return await self.read_frame()
        return await read_reply_emitting(self, on_emit)

    async def send(self, frame: bytes) -> None:
        """Write one frame; HostEOF if the host's end of the pipe is gone.

        The pipe is non-blocking (trio made it so): a frame that fits its buffer, as calls do,
        is written at once, with no trip through the scheduler; what does not fit waits for room
        through the stream. (trio's `send_all` always yields first: a scheduling round per job.)"""
        try:
            written = os.write(self._stdin.fileno(), frame)
        except BlockingIOError:
            written = 0
        except (OSError, ValueError):  # EPIPE: the host is gone; EBADF: its pipe closed
            raise HostEOF from None
        if written == len(frame):
            return
        try:
            await self._stdin.send_all(memoryview(frame)[written:])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise HostEOF from None

    async def read_frame(self) -> bytes:
        """Read one frame's payload; HostEOF when the pipe closes first."""
        buffer = self._buffer
        if not buffer:
            # Fast path: a small reply usually arrives whole in one read.
            chunk = await self._receive(RECEIVE_SIZE)
            if len(chunk) >= HEADER_SIZE:
                (length,) = HEADER.unpack_from(chunk)
                if len(chunk) == HEADER_SIZE + length:
                    return chunk[HEADER_SIZE:]
            buffer += chunk
        while True:
            end = -1
            if len(buffer) >= HEADER_SIZE:
                (length,) = HEADER.unpack_from(buffer)
                end = HEADER_SIZE + length
                if len(buffer) >= end:
                    payload = bytes(buffer[HEADER_SIZE:end])
                    del buffer[:end]
                    return payload
            buffer += await self._receive(max(RECEIVE_SIZE, end - len(buffer)))

    async def _receive(self, max_bytes: int) -> bytes:
        """What the pipe has, once it has something. It waits for the pipe first and reads
        after: a reply is never there the moment its call went out, and trio's `receive_some`
        yields, then tries a read that fails, then waits — two scheduling rounds and a wasted
        system call per job. Only this host's one reader reads the pipe."""
        fd = self._stdout.fileno()
        while True:
            try:
                await trio.lowlevel.wait_readable(fd)
                chunk = os.read(fd, max_bytes)
            except BlockingIOError:
                continue  # woken with nothing to read after all: wait again
            except (OSError, ValueError, trio.BrokenResourceError, trio.ClosedResourceError):
                raise HostEOF from None
            if not chunk:
                raise HostEOF
            return chunk
