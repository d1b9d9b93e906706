"""A pool of subprocess "runner hosts" that run picklable calls.

Design, driven by the hot path (thousands of small calls per second):

* ``size`` slots; a slot holds at most one host process. A caller takes a free
  slot (FIFO among waiters, most recently used host first), then does the
  call itself: one frame write and one frame read, in the caller's own task.
  No per-call task, no channel hop.
* Hosts are spawned lazily in a slot the first time it is used, and kept.
* A host that dies mid-call fails that call with :class:`HostCrashed`. A host
  whose caller is cancelled is killed at once (its state is unknown). Either
  way the slot is handed to a background task that waits for the old process
  to be reaped (never more than ``size`` processes) and spawns a replacement,
  backing off when hosts keep dying during start-up.
* Besides its ``size`` exclusive hosts, the pool has one *shared* host for
  :meth:`ProcessPool.run_shared`: calls that mostly wait on something outside
  Python (a child process, a socket) run there at once, each on a thread of the
  host, with cancels sent as requests (``_shared_host.py``). It is spawned on
  first use and replaced when it dies or is retired.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar

import trio

from actors import _framing
from actors._host import CANCELLED, HOST_END_CAUSES, MEMORY_LIMIT, RETIRED, STARTUP, Host, HostCrashed, HostEOF
from actors._shared_host import SharedHost
from actors.hosted import child_pids
from actors.isolation import NEUTRAL_CWD, python_command, python_environment

__all__ = ["HOST_END_CAUSES", "HostCrashed", "ProcessPool", "open_process_pool"]

T = TypeVar("T")

logger = logging.getLogger("actors.process_pool")

_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 2.0
# How long a cancelled call of the shared host may take to stop before the host is retired.
CANCEL_GRACE_SECONDS = 5.0
# How often a pool with a memory limit looks at its hosts' resident memory.
RSS_POLL_SECONDS = 0.25
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _Slot:
    """Capacity for one host; ``host`` is None until first used."""

    __slots__ = ("had_host", "host")

    def __init__(self) -> None:
        self.host: Host | None = None
        self.had_host = False


class _Waiter:
    """A caller queued for a slot; the releaser hands the slot over directly."""

    __slots__ = ("event", "slot")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.slot: _Slot | None = None


class ProcessPool:
    """Runs ``fn(*args, **kwargs)`` in subprocess hosts, at most ``size`` at once.

    Use as ``async with ProcessPool(2) as pool: await pool.run(fn, x)`` (or
    :func:`open_process_pool`). Functions are pickled with cloudpickle; ones
    defined at module level in importable modules travel by reference (cheap),
    and the host imports their module on first use. The host sees the parent's
    ``sys.path`` but not its working directory (:mod:`actors.isolation`). ``preload``
    modules are imported when a host starts.

    Hosts (and whatever their calls start) inherit only the environment variables named in
    ``env_allowlist`` (default :data:`actors.isolation.DEFAULT_ENV_ALLOWLIST`): the parent's
    environment may hold secrets that a call could read and return. ``env`` entries are
    added on top. Hosts run in ``cwd`` (default ``/``), never in the parent's directory.
    ``kill_grace`` > 0 sends SIGTERM to a host's process group and waits that
    long before SIGKILL when the pool stops a host (the caller never waits).
    ``max_rss_mb`` kills a host whose resident memory — its own plus that of the processes
    it started, e.g. a command a call runs (Linux) — passes that many MiB: its call fails
    with :class:`HostCrashed` naming the limit as ``max_rss_name``, and the next call gets
    a fresh host. (The shared host's calls all fail with it.)

    :meth:`run` gives each call a host of its own (``size`` of them at most) and kills the
    host of a cancelled call; :meth:`run_shared` runs calls together on the shared host,
    where a cancelled call gets a cancel request instead (:mod:`actors.hosted`).
    """

    def __init__(
        self,
        size: int,
        *,
        name: str = "pool",
        preload: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        env_allowlist: Iterable[str] | None = None,
        cwd: str = NEUTRAL_CWD,
        startup_timeout: float = 30.0,
        kill_grace: float = 0.0,
        max_rss_mb: int | None = None,
        max_rss_name: str = "max_rss_mb",
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.name = name
        self.size = size
        self._command = python_command("actors._host_main", *preload, unbuffered=True)
        self._shared_command = python_command("actors._host_main", _framing.SHARED_FLAG, *preload, unbuffered=True)
        self.cancel_grace = CANCEL_GRACE_SECONDS
        self._env = python_environment(env_allowlist, env)
        self._cwd = cwd
        self._startup_timeout = startup_timeout
        self._kill_grace = kill_grace
        self._max_rss_mb = max_rss_mb
        self._max_rss_name = max_rss_name

        self._free_warm: list[_Slot] = []
        self._free_cold: list[_Slot] = [_Slot() for _ in range(size)]
        self._waiters: deque[_Waiter] = deque()
        self._hosts: set[Host] = set()
        self._shared: SharedHost | None = None
        self._shared_starting: trio.Event | None = None
        self._shared_hosts: set[SharedHost] = set()  # the current one and retired ones still running
        self._had_shared = False
        # Host tasks alive (spawning, running or cleaning up); aclose waits for 0.
        self._host_tasks = 0
        self._no_host_tasks = trio.Event()
        self._no_host_tasks.set()

        self._nursery: trio.Nursery | None = None
        self._exit_stack: AsyncExitStack | None = None
        self._closed = False
        self._next_call_id = 0
        self._start_failures = 0
        self._busy = 0
        self._starting = 0
        self._calls = 0
        self._crashes = 0
        self._killed = 0
        self._restarts = 0
        self._ends: dict[str, int] = {}  # hosts that ended while the pool was open, by cause
        self._shared_alive = 0  # of `_hosts`, those spawned as a shared host

    # --------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> ProcessPool:
        if self._exit_stack is not None or self._closed:
            raise RuntimeError(f"process pool {self.name!r} cannot be entered twice")
        stack = AsyncExitStack()
        outer = await stack.enter_async_context(trio.open_nursery())
        self._nursery = await outer.start(self._background_nursery)
        self._exit_stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Shielded: cleanup must finish even when we leave because of a cancel.
        with trio.CancelScope(shield=True):
            await self.aclose()
        assert self._exit_stack is not None
        # The outer nursery only holds _background_nursery, which aclose() ended;
        # passing no exception keeps the body's exception (if any) unwrapped
        # instead of turning it into an ExceptionGroup.
        await self._exit_stack.__aexit__(None, None, None)

    async def _background_nursery(self, *, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        """Host the pool's background tasks in a nursery of their own.

        The ``async with`` body runs inside the outer nursery's cancel scope, so
        aclose() must cancel this inner one instead, or it would cancel the body.
        """
        async with trio.open_nursery() as nursery:
            task_status.started(nursery)
            if self._max_rss_mb:
                await self._watch_memory(self._max_rss_mb)
            await trio.sleep_forever()

    async def aclose(self) -> None:
        """Kill all hosts, reap them and close their pipes; the pool is unusable after."""
        self._closed = True
        while self._waiters:
            self._waiters.popleft().event.set()  # slot None -> ClosedResourceError
        for host in list(self._hosts):
            host.stop()
        closed = trio.ClosedResourceError(f"process pool {self.name!r} was closed during the call")
        for shared in list(self._shared_hosts):
            shared.fail_all(closed)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        await self._no_host_tasks.wait()

    # -------------------------------------------------------------------- calls

    async def run(self, fn: Callable[..., T], *args: Any, on_emit: Callable[[bytes], None] | None = None,
                  **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in an idle host and return its value.

        Raises what ``fn`` raised (same type, remote traceback attached),
        :class:`HostCrashed` if the host died during the call, or
        ``trio.ClosedResourceError`` if the pool is closed. If the caller is
        cancelled while the host runs the call, the host is killed and replaced.

        ``on_emit`` (so ``fn`` cannot take a keyword of that name) receives, in order and before
        the call returns, each chunk ``fn`` sends with :func:`actors.hosted.emit`; it is called
        synchronously by the task reading the host's pipe and must not block (``_emitted.py``).
        Without it, ``emit`` does nothing in the host and no chunk crosses the pipe.
        """
        if self._closed or self._nursery is None:
            raise trio.ClosedResourceError(f"process pool {self.name!r} is not open")
        self._next_call_id += 1
        call_id = self._next_call_id
        # Pickle before taking a slot: an unpicklable call must not cost a host.
        frame = _framing.encode_object((call_id, fn, args, kwargs, on_emit is not None))
        slot = await self._acquire_slot()
        try:
            host = slot.host
            if host is None or host.gone.is_set() or host.stop_requested:
                host = await self._start_host(slot)
        except BaseException:
            self._release_slot(slot)
            raise
        self._busy += 1
        self._calls += 1
        try:
            reply = await self._call_host(slot, host, frame, on_emit)
        finally:
            self._busy -= 1
        return self._unpack_reply(call_id, slot, host, reply)

    async def run_shared(self, fn: Callable[..., T], *args: Any, on_emit: Callable[[bytes], None] | None = None,
                         **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the shared host, alongside its other calls.

        For calls that mostly wait on something outside Python, and whose code is thread-safe.
        Raises like :meth:`run`, and takes ``on_emit`` as :meth:`run` does. If the caller is
        cancelled, the host is asked to cancel the call (running the hooks it registered with
        :func:`actors.hosted.on_cancel`) and keeps serving the others; a call that does not stop
        within ``cancel_grace`` seconds gets its host retired (no new calls; killed once the
        others are over).
        """
        if self._closed or self._nursery is None:
            raise trio.ClosedResourceError(f"process pool {self.name!r} is not open")
        self._next_call_id += 1
        call_id = self._next_call_id
        request = _framing.pickled((call_id, fn, args, kwargs, on_emit is not None))
        shared = await self._shared_host()
        self._busy += 1
        self._calls += 1
        try:
            ok, value = await shared.call(call_id, request, on_emit)
        except HostCrashed:
            if self._closed:
                raise trio.ClosedResourceError(f"process pool {self.name!r} was closed during the call") from None
            self._crashes += 1
            raise
        finally:
            self._busy -= 1
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    async def _shared_host(self) -> SharedHost:
        """The shared host, spawned (once, however many callers wait for it) if there is none."""
        while True:
            shared = self._shared
            if shared is not None and shared.usable:
                return shared
            starting = self._shared_starting
            if starting is not None:
                await starting.wait()
                continue
            self._shared_starting = starting = trio.Event()
            try:
                self._shared = await self._start_shared_host()
            finally:
                self._shared_starting = None
                starting.set()

    async def _start_shared_host(self) -> SharedHost:
        host = await self._spawn(self._shared_command)
        assert self._nursery is not None
        if self._had_shared:
            self._restarts += 1
        self._had_shared = True
        shared = SharedHost(host, self._nursery, self.cancel_grace)
        self._shared_hosts.add(shared)
        self._nursery.start_soon(self._serve_shared, shared, name=f"{self.name}-shared")
        return shared

    async def _serve_shared(self, shared: SharedHost) -> None:
        try:
            await shared.serve()
        finally:
            self._shared_hosts.discard(shared)
            if self._shared is shared:
                self._shared = None

    async def _call_host(self, slot: _Slot, host: Host, frame: bytes,
                         on_emit: Callable[[bytes], None] | None) -> bytes:
        """One round trip; on cancel or death, retire the host and pass the slot on."""
        try:
            # A cancel delivered here leaves the host untouched and reusable.
            await trio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            self._release_slot(slot)
            raise
        try:
            return await host.call(frame, on_emit)
        except HostEOF:
            raise await self._host_died(slot, host) from None
        except BaseException:
            # Cancelled mid-call (or an unexpected error): the host's state is unknown.
            self._retire(slot, host, killed=True, cause=CANCELLED)
            raise

    async def _host_died(self, slot: _Slot, host: Host) -> Exception:
        """Build the error for a host that died under a call (waits for its reaping)."""
        self._retire(slot, host, killed=False)
        await host.gone.wait()
        if self._closed:
            return trio.ClosedResourceError(f"process pool {self.name!r} was closed during the call")
        self._crashes += 1
        error = host.crash_error("while running the call")
        logger.warning("%s: %s", self.name, error.message)
        return error

    def _unpack_reply(self, call_id: int, slot: _Slot, host: Host, reply: bytes) -> Any:
        """Decode the host's reply; protocol violations retire the host."""
        try:
            reply_id, ok, value = pickle.loads(reply)
        except Exception as exc:
            # A reply that does not load came from a host that wrote something else than its
            # reply on the protocol pipe: what it sends next cannot be trusted either.
            self._retire(slot, host, killed=True, cause=RETIRED)
            raise RuntimeError(f"could not unpickle the reply of the runner host: {exc!r}") from exc
        if reply_id is not None and reply_id != call_id:
            self._retire(slot, host, killed=True, cause=RETIRED)
            raise RuntimeError(f"runner host answered call {reply_id}, expected {call_id}")
        self._release_slot(slot)
        if ok:
            return value
        raise value

    def _retire(self, slot: _Slot, host: Host, *, killed: bool, cause: str | None = None) -> None:
        """Kill ``host`` (for ``cause``; None: it died by itself) and give its slot to a background
        replacement task."""
        if killed and not host.stop_requested:
            self._killed += 1
        host.stop(cause)
        if self._closed or self._nursery is None:
            self._release_slot(slot)
            return
        self._nursery.start_soon(self._replace, slot, name=f"{self.name}-replace")

    # -------------------------------------------------------------------- slots

    async def _acquire_slot(self) -> _Slot:
        """Take a free slot, preferring one with an idle host; FIFO when waiting."""
        if not self._waiters:
            if self._free_warm:
                return self._free_warm.pop()
            if self._free_cold:
                return self._free_cold.pop()
        waiter = _Waiter()
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.slot is not None:
                self._release_slot(waiter.slot)  # handed over just as we were cancelled
            elif waiter in self._waiters:  # (aclose() may have dequeued it already)
                self._waiters.remove(waiter)
            raise
        if waiter.slot is None:
            raise trio.ClosedResourceError(f"process pool {self.name!r} was closed")
        return waiter.slot

    def _release_slot(self, slot: _Slot) -> None:
        """Hand ``slot`` to the oldest waiter, or park it as free."""
        if self._waiters and not self._closed:
            waiter = self._waiters.popleft()
            waiter.slot = slot
            waiter.event.set()
            return
        host = slot.host
        if host is not None and not host.stop_requested and not host.gone.is_set():
            self._free_warm.append(slot)
        else:
            self._free_cold.append(slot)

    # -------------------------------------------------------------------- hosts

    async def _start_host(self, slot: _Slot) -> Host:
        """Spawn a host into ``slot`` (which the caller holds) and wait until ready."""
        old = slot.host
        if old is not None:
            old.stop()
            await old.gone.wait()  # keep at most `size` processes alive
        slot.host = None
        host = await self._spawn(self._command)
        if slot.had_host:
            self._restarts += 1
        slot.host = host
        slot.had_host = True
        return host

    async def _spawn(self, command: Sequence[str]) -> Host:
        """Start a host running ``command`` and wait until it is ready, backing off while hosts
        keep failing to start."""
        if self._start_failures:
            await trio.sleep(min(_BACKOFF_FIRST * 2 ** (self._start_failures - 1), _BACKOFF_MAX))
        if self._closed or self._nursery is None:
            raise trio.ClosedResourceError(f"process pool {self.name!r} is closed")
        self._starting += 1
        try:
            host: Host = await self._nursery.start(self._host_task, command)
        except HostCrashed:
            self._start_failures += 1
            raise
        finally:
            self._starting -= 1
        self._start_failures = 0
        return host

    async def _host_task(self, command: Sequence[str], *, task_status: trio.TaskStatus[Host]) -> None:
        """Own one host process from spawn to reaping (runs in the pool's nursery)."""
        assert self._nursery is not None
        if self._host_tasks == 0:
            self._no_host_tasks = trio.Event()
        self._host_tasks += 1
        try:
            host = await Host.spawn(command, self._env, self._cwd, self.name)
            self._hosts.add(host)
            shared = command is self._shared_command
            self._shared_alive += shared
            if self._closed:
                host.stop()  # aclose() ran while we were spawning
            started = False
            try:
                await host.live(self._nursery, self._startup_timeout, self._kill_grace, task_status)
                started = True
            finally:
                self._hosts.discard(host)
                self._shared_alive -= shared
                if not host.stop_requested and not self._closed:
                    logger.warning("%s: runner host %d exited unexpectedly", self.name, host.pid)
                if not self._closed:
                    cause = host.ended_by() if started else STARTUP
                    self._ends[cause] = self._ends.get(cause, 0) + 1
        finally:
            self._host_tasks -= 1
            if self._host_tasks == 0:
                self._no_host_tasks.set()

    async def _replace(self, slot: _Slot) -> None:
        """Background: put a fresh host in ``slot`` after a crash or kill, then free it."""
        try:
            await self._start_host(slot)
        except HostCrashed as exc:
            logger.warning("%s: replacement host failed to start: %s", self.name, exc.message)
        except trio.ClosedResourceError:
            pass
        finally:
            self._release_slot(slot)

    async def _watch_memory(self, limit_mb: int) -> None:
        """Kill any host whose resident memory passed the limit (polled: a host that allocates
        without bound would otherwise take the machine down with it, not just its call)."""
        limit = limit_mb * 1024 * 1024
        while True:
            await trio.sleep(RSS_POLL_SECONDS)
            shared_hosts = {shared.host: shared for shared in self._shared_hosts}
            for host in list(self._hosts):
                if host.stop_requested:
                    continue
                shared = shared_hosts.get(host)
                if shared is not None:
                    self._check_shared_memory(shared, limit, limit_mb)
                    continue
                rss = _tree_resident_bytes(host.pid)
                if rss is not None and rss > limit:
                    self._kill_over_limit(host, rss, limit_mb)

    def _check_shared_memory(self, shared: SharedHost, limit: int, limit_mb: int) -> None:
        """A shared host runs many calls: each process a call started is held to the limit on its
        own (killing it fails that call alone); the host with anything else counts as one."""
        host = shared.host
        rest = _resident_bytes(host.pid)
        if rest is None:
            return  # gone meanwhile
        for child in child_pids(host.pid):
            rss = _tree_resident_bytes(child) or 0
            if not shared.owns_process(child):
                rest += rss
            elif rss > limit:
                reason = self._over_limit(rss, limit_mb)
                logger.warning("%s: runner host %d: process %d %s", self.name, host.pid, child, reason)
                shared.kill_process_of_call(child, reason)
        if rest > limit:
            self._kill_over_limit(host, rest, limit_mb)

    def _over_limit(self, rss: int, limit_mb: int) -> str:
        return (f"its resident memory reached {rss // (1024 * 1024)} MiB, over the limit of {limit_mb} MiB "
                f"({self._max_rss_name})")

    def _kill_over_limit(self, host: Host, rss: int, limit_mb: int) -> None:
        reason = self._over_limit(rss, limit_mb)
        logger.warning("%s: runner host %d %s", self.name, host.pid, reason)
        host.kill(reason, MEMORY_LIMIT)

    # -------------------------------------------------------------------- stats

    @property
    def host_ends(self) -> dict[str, int]:
        """How many hosts ended while the pool was open (each is replaced: an exclusive host at
        once, the shared host on its next call), by cause (``HOST_END_CAUSES``). For
        metrics: read whenever wanted, a copy."""
        return dict(self._ends)

    @property
    def hosts_alive(self) -> tuple[int, int]:
        """Host processes that exist now (starting and dying ones included), as (exclusive,
        shared): how many processes a channel's jobs keep, for whoever reports it."""
        return len(self._hosts) - self._shared_alive, self._shared_alive

    @property
    def stats(self) -> dict[str, Any]:
        """Counters for tests and metrics.

        ``alive``: host processes that exist (including starting and dying ones);
        ``busy``: calls in flight; ``idle``: ready hosts waiting for a call;
        ``restarts``: hosts spawned to replace a dead or killed one; ``crashes``:
        calls failed by a host dying; ``killed``: hosts killed because their caller
        was cancelled; ``calls``: calls sent to a host; ``pids``: host pids;
        ``shared_pid``: the pid of the shared host taking calls (None if there is none).
        """
        return {
            "size": self.size,
            "alive": len(self._hosts),
            "busy": self._busy,
            "idle": sum(1 for slot in self._free_warm if slot.host is not None and not slot.host.gone.is_set()),
            "starting": self._starting,
            "waiting": len(self._waiters),
            "restarts": self._restarts,
            "crashes": self._crashes,
            "killed": self._killed,
            "calls": self._calls,
            "pids": sorted(host.pid for host in self._hosts),
            "shared_pid": self._shared.host.pid if self._shared is not None and self._shared.usable else None,
        }


_MAX_TREE = 256  # processes looked at under one host, at most


def _resident_bytes(pid: int) -> int | None:
    """Resident memory of one process, from /proc (reads of kernel memory: they never block on
    I/O, so they are done inline in the trio task); None once the process is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def _tree_resident_bytes(pid: int) -> int | None:
    """Resident memory of a process and its descendants; None once the process is gone. Shared
    pages count once per process: an upper bound, which is what a limit wants."""
    total: int | None = None
    todo, seen = [pid], 0
    while todo and seen < _MAX_TREE:
        current = todo.pop()
        seen += 1
        rss = _resident_bytes(current)
        if rss is None:
            continue  # gone meanwhile
        todo.extend(child_pids(current))
        total = rss if total is None else total + rss
    return total


@asynccontextmanager
async def open_process_pool(size: int, **options: Any) -> AsyncIterator[ProcessPool]:
    """``async with open_process_pool(2) as pool:`` — same as ``async with ProcessPool(2)``."""
    async with ProcessPool(size, **options) as pool:
        yield pool
