"""Jobs this process has taken (popped or claimed) and not yet let go of.

A job is registered the moment it is taken, with no checkpoint in between, so JobService.Delete
always finds it: either still in its queue / row, or here. Delete marks the entry and cancels its
scope; the executor then ends the job with CANCELLED through the lifecycle. A cancel that arrives
for a job this process has not registered yet (another process's Delete, racing the take) is
remembered for a while, so the job is cancelled as soon as it is registered.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import trio

from jobworkerp.storage.queue import Ticket

EARLY_CANCEL_TTL_S = 120.0  # how long a cancel for a job not (yet) taken here is remembered
EARLY_CANCEL_MAX = 10_000  # and how many such cancels at most (oldest dropped first)


@dataclass(eq=False)
class ActiveJob:
    """One taken job: what it is, where it came from, and how to stop it."""

    ticket: Ticket
    from_queue: bool  # popped from this process's queue: ack or release it on the way out
    has_row: bool  # a database row backs it: delete the row when it ends
    lease_until: int | None = None  # our claim on that row, while we hold one
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    deleted: bool = False
    settled: bool = False  # it ended or went back: nothing more may change it from here
    running_on: str | None = None  # its channel, once its run started (the running-jobs metric)

    @property
    def job_id(self) -> int:
        return self.ticket.job_id


class RunningJobs:
    def __init__(self) -> None:
        self._jobs: dict[int, ActiveJob] = {}
        self._early_cancels: OrderedDict[int, float] = OrderedDict()

    def add(self, active: ActiveJob) -> ActiveJob:
        self._jobs[active.job_id] = active
        if self._early_cancels.pop(active.job_id, None) is not None:
            active.deleted = True
            active.scope.cancel()
        return active

    def remove(self, active: ActiveJob) -> None:
        if self._jobs.get(active.job_id) is active:
            del self._jobs[active.job_id]

    def get(self, job_id: int) -> ActiveJob | None:
        return self._jobs.get(job_id)

    def cancel(self, job_id: int) -> bool:
        """Cancel a taken job because it was deleted; False when it is not taken here."""
        active = self._jobs.get(job_id)
        if active is None:
            return False
        active.deleted = True
        active.scope.cancel()
        return True

    def cancel_when_taken(self, job_id: int) -> None:
        """Another process deleted a job that may be taken here now or in a moment."""
        if self.cancel(job_id):
            return
        now = trio.current_time()
        self._early_cancels[job_id] = now + EARLY_CANCEL_TTL_S
        while self._early_cancels:
            oldest, expiry = next(iter(self._early_cancels.items()))
            if expiry > now and len(self._early_cancels) <= EARLY_CANCEL_MAX:
                break
            del self._early_cancels[oldest]

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[ActiveJob]:
        """The jobs taken here now (read without a checkpoint: the set may change at the next)."""
        return iter(self._jobs.values())
