"""Automatic pipelining of Redis commands issued by many trio tasks at once.

Each hop through the asyncio bridge costs far more CPU than Redis spends on a command, so the
per-job Redis work (status, queue push/ack, uniq keys, result publish) is funnelled through one
flusher: commands that arrive while a round trip is in flight go out together in the next one.
Under load that turns several hops per job into a fraction of one; an idle system pays nothing
extra (a lone command is sent at once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import trio
from redis.exceptions import NoScriptError

from jobworkerp.front.bridge import call_asyncio, run_redis_pipeline

Op = Callable[[Any], Any]  # queues one command on the pipeline it is given


class _Pending:
    __slots__ = ("done", "op", "result")

    def __init__(self, op: Op) -> None:
        self.op = op
        self.done = trio.Event()
        self.result: Any = None


class RedisPipeliner:
    def __init__(self, client: Any, max_batch: int = 512) -> None:
        self._client = client
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._wake = trio.Event()
        self._running = False

    async def call(self, op: Op) -> Any:
        """Run one command (in the next round trip) and return its reply; errors are raised."""
        if not self._running:
            result = (await run_redis_pipeline(self._client, [op]))[0]
        else:
            pending = _Pending(op)
            self._queue.append(pending)
            self._wake.set()
            await pending.done.wait()
            result = pending.result
        if isinstance(result, BaseException):
            raise result
        return result

    async def script(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a registered Lua script by its sha (EVALSHA) in the next round trip.

        redis-py's own script-in-pipeline path asks SCRIPT EXISTS before every pipeline, which
        would double the round trips; here a script is loaded only when Redis says it lacks it.
        """
        def op(pipe: Any) -> Any:
            return pipe.evalsha(script.sha, len(keys), *keys, *args)

        try:
            return await self.call(op)
        except NoScriptError:
            await call_asyncio(self._client.script_load, script.script)
            return await self.call(op)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The flusher task (one per client); callers fall back to direct round trips without it."""
        self._running = True
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._queue:
                    batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                    try:
                        with trio.CancelScope(shield=True):  # callers are waiting on these replies
                            results = await run_redis_pipeline(self._client, [p.op for p in batch])
                    except Exception as e:  # the round trip itself failed: every caller sees it
                        results = [e] * len(batch)
                    for pending, result in zip(batch, results, strict=True):
                        pending.result = result
                        pending.done.set()
        finally:
            self._running = False
            for pending in self._queue:  # nobody will flush these any more
                pending.result = trio.ClosedResourceError("Redis pipeliner stopped")
                pending.done.set()
            self._queue = []
