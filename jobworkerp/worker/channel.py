"""ChannelActor: pulls jobs of one channel and runs at most `concurrency` of them at once.

The loop is deliberately plain: take a free slot, then take a job, then start it. Taking the
slot first means a job is never popped before it can run, so queued jobs stay visible to
Delete and to other processes until there is room for them.

Shutdown is graceful: `stop()` ends the pull loop, and `run()` returns once the jobs already
running have finished.
"""

from __future__ import annotations

import logging

import trio

from actors.process_pool import ProcessPool
from jobworkerp.config import ChannelConfig
from jobworkerp.proto.jobworkerp import data
from jobworkerp.worker.executor import ExecutorContext, execute_job

log = logging.getLogger(__name__)


class ChannelActor:
    def __init__(self, channel: ChannelConfig, ctx: ExecutorContext, pool: ProcessPool) -> None:
        self.channel = channel
        self._ctx = ctx
        self._pool = pool
        self._slots = trio.Semaphore(channel.concurrency)
        self._pull_scope: trio.CancelScope | None = None
        self._stopped = False
        self.in_flight = 0
        self.peak_in_flight = 0
        self.completed = 0

    def stop(self) -> None:
        """Stop taking jobs; running ones finish."""
        self._stopped = True
        if self._pull_scope is not None:
            self._pull_scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
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

    async def _run_one(self, job: data.Job) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await execute_job(self._ctx, self._pool, job)
        except Exception:
            log.exception("channel %s: job %s failed outside the runner", self.channel.name, job.id.value)
        finally:
            self.in_flight -= 1
            self.completed += 1
            self._slots.release()
