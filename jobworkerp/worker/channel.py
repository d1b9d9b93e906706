"""ChannelActor: pulls jobs of one channel and runs at most `concurrency` of them at once.

The loop is deliberately plain: take a free slot, then take a job, then start it. Taking the
slot first means a job is never popped before it can run, so queued jobs stay visible to
Delete and to other processes until there is room for them. The scheduler shares the same
slots (`try_reserve` / `start_reserved`), so queue jobs and due RDB jobs together never exceed
the channel's concurrency.

Shutdown is graceful: `stop()` ends the pull loop, and `run()` returns once the jobs already
running have finished.
"""

from __future__ import annotations

import logging

import trio

from jobworkerp.config import ChannelConfig
from jobworkerp.proto.jobworkerp import data
from jobworkerp.worker.executor import ExecutorContext, RunnerPool, execute_job

log = logging.getLogger(__name__)


class ChannelActor:
    def __init__(self, channel: ChannelConfig, ctx: ExecutorContext, pool: RunnerPool) -> None:
        self.channel = channel
        self._ctx = ctx
        self._pool = pool
        self._slots = trio.Semaphore(channel.concurrency)
        self._pull_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._stopped = False

    def stop(self) -> None:
        """Stop taking jobs; running ones finish."""
        self._stopped = True
        if self._pull_scope is not None:
            self._pull_scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            self._pull_scope = trio.CancelScope()  # a fresh scope per (re)start of the actor
            with self._pull_scope:
                while not self._stopped:
                    await self._slots.acquire()
                    try:
                        job = await self._ctx.storage.queue.pop(self.channel.name)
                    except BaseException:
                        self._slots.release()
                        raise
                    nursery.start_soon(self._run_one, job)

    def try_reserve(self, wanted: int) -> int:
        """Take up to `wanted` free slots without waiting (for the scheduler); returns how many."""
        if self._stopped or self._nursery is None:
            return 0
        taken = 0
        while taken < wanted:
            try:
                self._slots.acquire_nowait()
            except trio.WouldBlock:
                break
            taken += 1
        return taken

    def release_reserved(self, count: int) -> None:
        for _ in range(count):
            self._slots.release()

    def start_reserved(self, job: data.Job, claimed_until: int) -> None:
        """Run a job the scheduler claimed, in a slot it reserved."""
        assert self._nursery is not None
        self._nursery.start_soon(self._run_one, job, claimed_until)

    async def _run_one(self, job: data.Job, claimed_until: int | None = None) -> None:
        try:
            await execute_job(self._ctx, self._pool, job, claimed_until=claimed_until)
        except Exception:
            log.exception("channel %s: job %s failed outside the runner", self.channel.name, job.id.value)
        finally:
            if claimed_until is None:  # popped from the queue: it is no longer in flight here
                with trio.CancelScope(shield=True):
                    try:
                        await self._ctx.storage.queue.ack(job.id.value)
                    except Exception:
                        log.exception("channel %s: could not ack job %s", self.channel.name, job.id.value)
            self._slots.release()
