"""Automatic pipelining of Redis commands issued by many trio tasks at once.

Each round trip costs far more CPU here than Redis spends on a command, so the per-job Redis work
(status, queue push/ack, uniq keys, result publish) is funnelled through one flusher, on a
connection of its own on a trio socket (storage/redis_wire.py): commands that arrive while a
round trip is in flight go out together in the next one. Under load that turns several round
trips per job into a fraction of one; an idle system pays nothing extra (a lone command someone
waits for is sent at once).

Commands nobody waits for (`send`: status writes, publishes) linger: they go out with the next
command someone does wait for, or LINGER_S after they were queued. A short job's RUNNING status
then shares the round trip of its settle instead of costing one of its own: on a quiet system
each round trip is a socket write and a read on both sides, the larger part of a job's CPU
(py-spy of a Scalable worker, one caller at a time).

A caller that awaits a reply (`call`, or a `submit`'s reply) when no round trip is in flight
makes the round trip itself, with everything queued so far, rather than handing it to the
flusher and waiting to be woken: on a quiet system that hand-over and the wake-up after it were
two scheduling rounds of each job's push (front) and settle (worker), on the path every DIRECT
answer waits for — about half of what the pipelining cost over the bare socket
(bench/redis_round_trip.py). Under load a round trip is nearly always in flight, so callers
queue for the flusher as before. Either way one round trip is on the connection at a time, and
commands go out in the order they were queued (tests/redis_state/test_redis_pipeline.py tries
random interleavings of callers, some cancelled).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import trio
from redis.exceptions import NoScriptError

from jobworkerp.aio import call_asyncio, run_redis_pipeline
from jobworkerp.storage.redis_wire import RedisWire

log = logging.getLogger(__name__)

Op = Callable[[Any], Any]  # queues one command on the pipeline it is given
DRAIN_TIMEOUT_S = 5.0
LINGER_S = 0.01  # longest a command nobody waits for waits for company


class _Pending:
    __slots__ = ("done", "op", "owner", "result", "script", "what")

    def __init__(self, op: Op, what: str | None = None, script: Any = None,
                 owner: RedisPipeliner | None = None) -> None:
        self.op = op
        self.done = trio.Event()
        self.result: Any = None
        self.what = what  # set for fire-and-forget commands: named in the log when they fail
        self.script = script  # the Lua script an EVALSHA op runs, to reload it if Redis lost it
        self.owner = owner  # the pipeliner that sends it when its reply is awaited (None: not awaited so)

    async def reply(self) -> Any:
        """The command's reply once its round trip is done; its error is raised. A reply that is
        already here is returned without a scheduling round (`Event.wait` yields even when set):
        a DIRECT job's front confirms two writes so, sent with its push. One still queued is
        sent now: by the caller itself when no round trip is in flight."""
        if not self.done.is_set():
            if self.owner is None:
                await self.done.wait()
            else:
                await self.owner._deliver(self)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


Reply = _Pending  # what `RedisPipeliner.submit` hands back


class RedisPipeliner:
    def __init__(self, client: Any, max_batch: int = 512) -> None:
        self._client = client
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._wake = trio.Event()  # anything is queued
        self._urgent = trio.Event()  # a command someone waits for is queued
        self._running = False
        self._wire: RedisWire | None = None  # the flusher's own connection (trio sockets), while it runs
        self._in_flight = False  # a round trip is on that connection (the flusher's or a caller's)
        self._landed = trio.Event()  # set when a round trip there ends

    async def call(self, op: Op, *, script: Any = None) -> Any:
        """Run one command (in the next round trip) and return its reply; errors are raised."""
        pending = self.submit(op, script=script)
        if pending is None:
            pending = _Pending(op, script=script)
            await self._execute([pending])
        return await pending.reply()

    def submit(self, op: Op, *, script: Any = None) -> Reply | None:
        """Queue a command whose reply the caller reads later (`await reply.reply()`), without a
        checkpoint: commands the caller queues before it awaits go out with it, in the same
        round trip. So a write that must be confirmed but has to precede another command costs
        no round trip of its own. None when no flusher runs (then `call`)."""
        if not self._running:
            return None
        pending = _Pending(op, script=script, owner=self)
        self._queue.append(pending)
        self._wake.set()  # unless someone awaits it first, it goes out as `send`'s do
        return pending

    async def _deliver(self, pending: _Pending) -> None:
        """Until `pending` has its reply: make the round trip when none is in flight, else ask
        the flusher for the next one and wait."""
        while not pending.done.is_set():
            if self._running and not self._in_flight and self._queue:
                await self._lead()
            else:
                self._wake.set()
                self._urgent.set()
                await pending.done.wait()

    async def _lead(self) -> None:
        """One round trip with the next batch of what is queued, on the flusher's connection —
        made by the flusher, or by a caller awaiting a reply when none is in flight. Shielded:
        other callers wait on its replies, and the connection must not be left mid-reply."""
        batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        self._in_flight = True
        try:
            with trio.CancelScope(shield=True):
                await self._execute(batch, self._wire)
        finally:
            self._in_flight = False
            landed, self._landed = self._landed, trio.Event()
            landed.set()

    def send(self, op: Op, what: str, *, script: Any = None, at_once: bool = False) -> bool:
        """Queue a command whose reply nobody waits for (status updates, publishes); it goes out
        with the next command someone waits for, or after LINGER_S — or in the next round trip
        with `at_once` (a wake-up that someone's read waits for).

        It goes out in order with everything queued before and after it, so e.g. a job's RUNNING
        status can never land after its final delete. Returns False when no flusher runs (the
        caller must then `call` instead). A failure is logged, naming `what`.
        """
        if not self._running:
            return False
        self._queue.append(_Pending(op, what, script))
        self._wake.set()
        if at_once:
            self._urgent.set()
        return True

    def send_script(self, script: Any, keys: Sequence[Any], args: Sequence[Any], what: str) -> bool:
        """`send` for a registered Lua script (see `script`)."""
        return self.send(evalsha(script, keys, args), what, script=script)

    async def script(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a registered Lua script by its sha (EVALSHA) in the next round trip.

        redis-py's own script-in-pipeline path asks SCRIPT EXISTS before every pipeline, which
        would double the round trips; here a script is loaded only when Redis says it lacks it.
        """
        return await self.call(evalsha(script, keys, args), script=script)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The flusher task (one per client); callers fall back to direct round trips without it.

        When cancelled it still sends what is queued (fire-and-forget commands included), within
        a bounded time, so a graceful shutdown loses no status update or ack.
        """
        self._running = True
        self._wire = RedisWire(self._client)
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                if not self._urgent.is_set():  # only fire-and-forget so far: wait for company
                    with trio.move_on_after(LINGER_S):
                        await self._urgent.wait()
                self._wake = trio.Event()
                self._urgent = trio.Event()
                await self._flush()
        finally:
            self._running = False
            with trio.move_on_after(DRAIN_TIMEOUT_S) as drain:
                drain.shield = True
                await self._flush()
            for pending in self._queue:  # nobody will flush these any more
                pending.result = trio.ClosedResourceError("Redis pipeliner stopped")
                pending.done.set()
            self._queue = []
            wire, self._wire = self._wire, None
            if wire is not None:
                with trio.CancelScope(shield=True):
                    await wire.aclose()

    async def _flush(self) -> None:
        while self._in_flight:  # a caller's round trip: the connection takes one at a time
            await self._landed.wait()
        while self._queue:
            await self._lead()

    async def _execute(self, batch: list[_Pending], wire: RedisWire | None = None) -> None:
        """One round trip for the batch (on the flusher's own connection when given: only the
        flusher, one round trip at a time, uses it); scripts Redis has lost (a restart) are
        loaded and re-run."""
        results = await self._round_trip(batch, wire)
        lost = [i for i, (p, r) in enumerate(zip(batch, results, strict=True))
                if isinstance(r, NoScriptError) and p.script is not None]
        if lost:
            for script in {id(batch[i].script): batch[i].script for i in lost}.values():
                try:
                    await call_asyncio(self._client.script_load, script.script)
                except Exception as e:
                    log.warning("Redis script reload failed: %s", e)
            for i, result in zip(lost, await self._round_trip([batch[i] for i in lost], wire), strict=True):
                results[i] = result
        for pending, result in zip(batch, results, strict=True):
            if pending.what is not None and isinstance(result, BaseException):
                log.warning("Redis %s failed: %s", pending.what, result)
            pending.result = result
            pending.done.set()

    async def _round_trip(self, batch: list[_Pending], wire: RedisWire | None) -> list[Any]:
        try:
            ops = [p.op for p in batch]
            if wire is not None:
                return await wire.round_trip(ops)
            return await run_redis_pipeline(self._client, ops)
        except Exception as e:  # the round trip itself failed: every command of it did
            return [e] * len(batch)


def evalsha(script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Op:
    """An op running a registered script by sha (see RedisPipeliner.script); Redis answers
    NoScriptError when it has lost the script."""
    return lambda pipe: pipe.evalsha(script.sha, len(keys), *keys, *args)
