"""The one trio <-> asyncio bridge: grpclib and redis.asyncio run inside trio-asyncio, and this
module is the only place that crosses between the two worlds. Storage (Redis) and the gRPC front
both use it, so it lives below both.

grpclib and redis-py's asyncio client are asyncio libraries; the rest of the system is trio.
- gRPC handlers (asyncio side) make one hop into trio per call (`call_trio`), or one hop per item
  for open-ended streams (`iterate_trio`), which is what keeps the RPC path cheap.
- Trio code calls an asyncio coroutine function with one hop (`call_asyncio`); callers group
  Redis work into one pipeline or Lua script per hop. The per-job Redis traffic does not come
  here: it runs on trio sockets (storage/redis_wire.py, storage/redis_subscription.py).
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import outcome
import trio
import trio_asyncio

T = TypeVar("T")
log = logging.getLogger(__name__)


LEFTOVER_TASKS_S = 5.0  # longest wait, at shutdown, for asyncio tasks still running to end


@asynccontextmanager
async def open_asyncio_bridge() -> AsyncIterator[None]:
    """Run an asyncio loop inside the current trio run (needed before serving gRPC)."""
    async with trio_asyncio.open_loop() as loop, trio.open_nursery() as nursery:
        _run_ready_handles_in_batches(loop)
        _check_callbacks_in_debug_only(loop)
        nursery.start_soon(_prune_cancelled_timers, loop)
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await _end_leftover_tasks(loop)


HANDLE_BATCH = 64  # most asyncio callbacks trio-asyncio runs before the trio tasks get a turn


def _run_ready_handles_in_batches(loop: asyncio.AbstractEventLoop) -> None:
    """Let trio-asyncio run the asyncio callbacks that are ready one after another, up to
    HANDLE_BATCH, before it gives the trio tasks a turn — as asyncio's own loop runs all ready
    callbacks per iteration.

    trio-asyncio's loop task takes each callback from a trio channel with a timeout scope and a
    checkpoint, so every asyncio callback (a task step, a future's wakeup, a transport write)
    cost a trio scheduling round of its own: several per gRPC call, ~7 % of the main thread
    under 50 callers. Its `_main_loop_one` already has a no-wait mode (used to drain the queue
    at exit); this wraps it on this loop so that, after the one callback it waited for, the
    callbacks already queued are run without waiting. Order is unchanged (the same FIFO queue);
    a stop() callback still ends the loop (its exception passes through). Another trio-asyncio
    layout (no `_main_loop_one`) keeps its own behaviour."""
    one = getattr(loop, "_main_loop_one", None)
    if one is None or not inspect.iscoroutinefunction(one):
        return

    async def batched(no_wait: bool = False) -> None:
        await one(no_wait)
        if no_wait:  # the exit drain calls it so itself, until WouldBlock
            return
        for _ in range(HANDLE_BATCH - 1):
            try:
                await one(True)
            except trio.WouldBlock:
                return

    loop._main_loop_one = batched  # type: ignore[attr-defined]


def _check_callbacks_in_debug_only(loop: asyncio.AbstractEventLoop) -> None:
    """Check the callbacks given to call_soon & co. only in debug mode, as asyncio's own loop does.

    trio-asyncio checks every one (is it a coroutine? a coroutine function? callable?) on every
    call: about twenty times per job in a Scalable worker, a few percent of its CPU, for a check
    that only catches a programming error (a coroutine passed where a plain callback belongs),
    which asyncio itself leaves to debug mode (PYTHONASYNCIODEBUG=1 or `loop.set_debug(True)`
    turn it back on here too). Another trio-asyncio layout (no `_check_callback`) is left as is."""
    check = getattr(loop, "_check_callback", None)
    if check is None:
        return

    def check_in_debug(callback: Any, method: str) -> None:
        if loop.get_debug():
            check(callback, method)

    loop._check_callback = check_in_debug  # type: ignore[attr-defined]


TIMER_PRUNE_S = 1.0


async def _prune_cancelled_timers(loop: asyncio.AbstractEventLoop) -> None:
    """Drop cancelled timers from trio-asyncio's timer heap, once a second.

    grpclib arms a `call_later` for the deadline of every call that has one and cancels it when
    the call ends; asyncio's own loop drops cancelled timers from its heap, but trio-asyncio's
    keeps each until the time it was set for. With clients sending 30 s deadlines at 500 calls a
    second, 15 000 dead timers (each with its contextvars Context) stayed alive: the garbage
    collector walked them on every full collection, which stalled the loop 130-230 ms every few
    seconds and made health checks that slow (bench/overload.py). The heap is rebuilt in place
    between two loop steps, so the loop never sees it half-done."""
    timers: list[asyncio.TimerHandle] | None = getattr(loop, "_timers", None)
    if not isinstance(timers, list):  # another trio-asyncio layout: nothing to do here
        return
    while True:
        await trio.sleep(TIMER_PRUNE_S)
        if any(t.cancelled() for t in timers):
            timers[:] = [t for t in timers if not t.cancelled()]
            heapq.heapify(timers)


async def _end_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel and collect the asyncio tasks still running as the loop closes (a gRPC handler
    cut off by the stop). Closing the loop would re-raise a task's exception out of the
    server, and a cancelled Redis read may end as a redis TimeoutError rather than as a
    cancellation: a clean SIGTERM then exited with status 1 (soak seed 932128)."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    await trio_asyncio.aio_as_trio(asyncio.wait)(tasks, timeout=LEFTOVER_TASKS_S)
    for task in tasks:
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            log.info("a request cut off by the stop ended with %s: %s", type(error).__name__, error)


class _BridgedCalls:
    """The trio calls asyncio code (gRPC handlers) has made and that have not returned yet."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = trio.Event()
        self.idle.set()


_CALLS: trio.lowlevel.RunVar[_BridgedCalls] = trio.lowlevel.RunVar("jobworkerp_bridged_calls")


def _calls() -> _BridgedCalls:
    try:
        return _CALLS.get()
    except LookupError:
        calls = _BridgedCalls()
        _CALLS.set(calls)
        return calls


async def _tracked(fn: Callable[..., Awaitable[T]], *args: Any) -> outcome.Outcome[T]:
    """Run `fn`, counted, and return its outcome: an error is handed to the asyncio caller as a
    value, because if that caller is gone (a handler cancelled at a stop) an exception raised
    here would land in the bridge's own nursery and take the whole process down."""
    calls = _calls()
    calls.count += 1
    calls.idle = trio.Event() if calls.count == 1 else calls.idle
    try:
        return outcome.Value(await fn(*args))
    except trio.Cancelled:
        raise
    except Exception as e:
        return outcome.Error(e)
    finally:
        calls.count -= 1
        if calls.count == 0:
            calls.idle.set()


async def call_trio(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """From asyncio code: run a trio coroutine function and return its value."""
    future = trio_asyncio.trio_as_aio(_tracked)(fn, *args)
    try:
        result: outcome.Outcome[T] = await future
    finally:
        _drop_cancel_override(future)
    return result.unwrap()


def _drop_cancel_override(future: Any) -> None:
    """Take trio-asyncio's `cancel` override off a future it has resolved.

    Why: it puts a closure on the future as its `cancel` (so that cancelling the future cancels
    the trio task), and the closure holds the task's handle, which holds the future: a
    reference cycle per call, and with it the call's whole result (a job's JobResult and its
    parts), its context and cancel scope, left for the garbage collector instead of freed when
    the call returns. Done, the future's own `cancel` does the same (nothing: it is done)."""
    if future.done():
        try:
            del future.cancel
        except AttributeError:  # not overridden (another trio-asyncio layout)
            pass


async def wait_for_bridged_calls(timeout_s: float) -> int:
    """Wait (at most `timeout_s`) until every `call_trio` call has returned; how many have not.

    A gRPC handler cancelled by the server's shutdown (or by its client) still runs its trio
    side to the end — e.g. the cleanup of a half-accepted job — and that needs storage: the
    server waits for them before it closes storage, so no cleanup meets a closed client."""
    calls = _calls()
    with trio.move_on_after(timeout_s):
        await calls.idle.wait()
    return calls.count


def iterate_trio(agen: AsyncIterator[T]) -> AsyncIterator[T]:
    """From asyncio code: iterate a trio async generator (each item one trio task, as
    trio-asyncio's own `trio_as_aio(agen)` does, without leaving a reference cycle per item)."""
    return _iterate(trio_asyncio.current_loop.get(), agen.__aiter__())


async def _iterate(loop: Any, agen: AsyncIterator[T]) -> AsyncIterator[T]:
    while True:
        future = loop.trio_as_future(agen.__anext__)
        try:
            item = await future
        except StopAsyncIteration:
            return
        finally:
            _drop_cancel_override(future)
        yield item


def close_trio_generator(agen: AsyncGenerator[Any, None]) -> None:
    """From asyncio code (a `finally`, even one run by a generator's finalizer): close a trio
    async generator that `iterate_trio` stopped iterating, in a trio task of its own. Nothing is
    awaited here, so a closing loop cannot hold the caller; what the close raises is logged."""

    async def close() -> None:
        try:
            await agen.aclose()
        except Exception as e:  # noqa: BLE001 - the iteration is over either way; its cleanup is best effort
            log.debug("closing %r: %s: %s", agen, type(e).__name__, e)

    try:
        trio_asyncio.current_loop.get().run_trio_task(close)
    except (LookupError, RuntimeError):  # no loop, or it is closed: the garbage collector closes it
        pass


async def call_asyncio(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """From trio code: run an asyncio coroutine function (e.g. a redis.asyncio command) to completion."""
    return await trio_asyncio.aio_as_trio(fn)(*args, **kwargs)


RECANCEL_S = 0.5  # how often a cancelled `call_asyncio_task` repeats its cancel while the task runs on
CANCEL_PATIENCE_S = 5.0  # after this, the task is left to end by itself (or at the bridge's close)


class AsyncioTaskCancelled(Exception):
    """The asyncio task was cancelled from asyncio's side (the bridge closing), not by its trio caller."""


async def call_asyncio_task(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """From trio code: run `fn(*args)` as an asyncio task and return its value; a trio
    cancellation cancels the task, and waits (shielded, at most CANCEL_PATIENCE_S) until it ends.

    Unlike `call_asyncio`, the cancel is repeated while the task runs on: asyncio's `Task.cancel`
    only cancels the future the task awaits, and if that future completes anyway — a trio call
    made with `call_trio` that returned its value just as it was cancelled — the task goes on as if
    never cancelled. `call_asyncio` cancels once and then waits for good: a grpc-web stream whose
    client had left waited so for its next message forever, and held the server's stop
    (front/grpc_web.py)."""
    loop = trio_asyncio.current_loop.get()
    finished = trio.Event()
    task = loop.create_task(fn(*args))
    task.add_done_callback(lambda _: finished.set())
    try:
        await finished.wait()
    finally:
        if not task.done():
            with trio.CancelScope(shield=True), trio.move_on_after(CANCEL_PATIENCE_S):
                while not task.done():
                    task.cancel()
                    with trio.move_on_after(RECANCEL_S):
                        await finished.wait()
            if not task.done():
                log.warning("an asyncio task ignored its cancellation for %.0f s; left to end by itself",
                            CANCEL_PATIENCE_S)
    if task.cancelled():
        raise AsyncioTaskCancelled(f"{getattr(fn, '__qualname__', fn)} was cancelled by the asyncio loop")
    return task.result()


async def _queued(client: Any, ops: Sequence[Callable[[Any], Any]]) -> Any:
    """Asyncio side: a non-transactional pipeline with every op queued on it, not yet sent."""
    pipe = client.pipeline(transaction=False)
    for op in ops:
        queued = op(pipe)
        if inspect.isawaitable(queued):  # redis-py's Script.__call__ is a coroutine on asyncio
            await queued
    return pipe


async def _execute_pipeline(client: Any, ops: Sequence[Callable[[Any], Any]]) -> list[Any]:
    """Asyncio side of `run_redis_pipeline`: queue every op on one pipeline, send it once."""
    pipe = await _queued(client, ops)
    return await pipe.execute(raise_on_error=False)


async def run_redis_pipeline(client: Any, ops: Sequence[Callable[[Any], Any]]) -> list[Any]:
    """From trio code: one round trip for many commands. Each op queues exactly one command on
    the pipeline it is given (e.g. `lambda p: p.hset(...)`, or a Script called with client=p);
    a failing command's slot holds its exception instead of raising."""
    return await trio_asyncio.aio_as_trio(_execute_pipeline)(client, ops)


def open_redis(url: str, *, username: str | None = None, password: str | None = None, max_connections: int = 10,
               db: int | None = None, tls_ca_cert: str | None = None, tls_cert: str | None = None,
               tls_key: str | None = None) -> Any:
    """A redis.asyncio client (connections open lazily on the asyncio loop; close with `close_redis`).

    A `rediss://` URL connects over TLS, verifying the server's certificate and name (redis-py's
    defaults) against `tls_ca_cert` or the system store; `tls_cert`/`tls_key` are a client
    certificate for servers that require one. The TLS options are only for rediss:// URLs
    (config.py refuses them otherwise), since a plain connection would not accept them."""
    import redis.asyncio
    from redis.maint_notifications import MaintNotificationsConfig

    # A blocking pool makes a burst of commands wait for a free connection instead of failing.
    # No maintenance notifications (a Redis Enterprise feature): redis-py's "auto" mode sends
    # CLIENT MAINT_NOTIFICATIONS on every connect, and Redis 7 answers it with an error that,
    # on a pub/sub connection coming back after an outage, reached the reader as a ResponseError
    # and ended the process (tests/chaos/test_cross_process_races.py, in CI).
    options: dict[str, Any] = {"max_connections": max_connections, "timeout": 20,
                               "maint_notifications_config": MaintNotificationsConfig(enabled=False)}
    if username:
        options["username"] = username
    if password:
        options["password"] = password
    if db is not None:
        options["db"] = db
    if tls_ca_cert:
        options["ssl_ca_certs"] = tls_ca_cert
    if tls_cert:
        options["ssl_certfile"] = tls_cert
        options["ssl_keyfile"] = tls_key
    pool = redis.asyncio.BlockingConnectionPool.from_url(url, **options)
    return redis.asyncio.Redis(connection_pool=pool)


async def close_redis(client: Any) -> None:
    await trio_asyncio.aio_as_trio(client.aclose)(close_connection_pool=True)
