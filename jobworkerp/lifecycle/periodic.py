"""When a periodic job runs next (pure): phase kept, missed ticks skipped, never replayed."""

from __future__ import annotations

from jobworkerp.lifecycle.rerun import rerun_of
from jobworkerp.proto.jobworkerp import data


def next_periodic_run_ms(previous_run_after: int, previous_start: int, interval_ms: int, now: int) -> int:
    """The first grid point after the previous run that is not in the past.

    The grid is anchored at the previous scheduled time (or, when it had none, its start time),
    so a series keeps its phase however long a run takes.
    """
    base = previous_run_after if previous_run_after > 0 else previous_start
    nxt = base + interval_ms
    if now > nxt:
        nxt += interval_ms * ((now - nxt) // interval_ms + 1)
    return nxt


def next_run_job(job: data.Job, run_after_time: int) -> data.Job:
    """The same job (same id, so Delete stops the series) due at the next grid point."""
    return rerun_of(job, run_after_time=run_after_time, retried=0)
