"""Scheduler: every fetch interval, claim the RDB jobs that are due soon and hand them to their
channel, never more than the channel has free slots.

A claim is a compare-and-set of the row's lease (grabbed_until_time), so several worker
processes can poll the same table and each job runs once; the executor renews the lease while
the job runs, so only a dead process's claims expire and get picked up again (at-least-once).
The executor waits until run_after_time, so runs start on time within the fetch window.
"""

from __future__ import annotations

import logging

import trio

from jobworkerp.clock import now_ms
from jobworkerp.storage.rdb import Repository
from jobworkerp.usecase.workers import Workers
from jobworkerp.worker.channel import ChannelActor

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, repo: Repository, workers: Workers, channels: list[ChannelActor], fetch_interval_ms: int,
                 claim_lease_ms: int) -> None:
        self._repo = repo
        self._workers = workers
        self._channels = channels
        self._fetch_interval_ms = fetch_interval_ms
        self._claim_lease_ms = claim_lease_ms
        self._stopped = False
        self._wake = trio.Event()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def wake(self) -> None:
        """Poll now rather than at the next tick (a job due within the window was just stored)."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while not self._stopped:
            self._wake = trio.Event()
            await self.tick()
            with trio.move_on_after(self._fetch_interval_ms / 1000):
                await self._wake.wait()

    async def tick(self) -> int:
        """One poll over every channel; returns how many jobs were handed over."""
        started = 0
        for channel in self._channels:
            free = channel.try_reserve(channel.channel.concurrency)
            if not free:
                continue
            try:
                worker_ids = await self._workers.ids_on_channel(channel.channel.name)
                if not worker_ids:
                    continue
                now = now_ms()
                due = await self._repo.find_due_jobs(worker_ids, now + self._fetch_interval_ms, now, free)
                for job in due:
                    # The lease covers the wait until run_after_time (at most one fetch interval) too.
                    lease = now + self._fetch_interval_ms + self._claim_lease_ms
                    if await self._repo.claim_job(job.id.value, job.data.grabbed_until_time or 0, lease):
                        job.data.grabbed_until_time = lease
                        channel.start_reserved(job, lease)
                        free -= 1
                        started += 1
            except Exception:
                log.exception("scheduler: polling channel %s failed; retrying next tick", channel.channel.name)
            finally:
                channel.release_reserved(free)
        return started
