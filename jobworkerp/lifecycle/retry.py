"""Retry policy arithmetic (pure): whether a failed attempt is retried, and after how long.

Departures from upstream v0.7 (README.md, "Scheduling, retries and chains"): `max_interval` caps
every delay (0 = no cap) and `max_retry = 0` means no retries.
"""

from __future__ import annotations

from jobworkerp.lifecycle.rerun import rerun_of
from jobworkerp.proto.jobworkerp import data


def retry_delay_ms(policy: data.RetryPolicy, retried: int) -> int:
    """Delay before retry number `retried + 1` (`retried` = retries already made)."""
    kind = policy.type
    if kind == data.RetryType.CONSTANT:
        delay = float(policy.interval)
    elif kind == data.RetryType.LINEAR:
        delay = float(policy.interval) * (retried + 1)
    elif kind == data.RetryType.EXPONENTIAL:
        delay = policy.interval * (policy.basis**retried)
    else:
        return 0
    if policy.max_interval:
        delay = min(delay, float(policy.max_interval))
    return int(round(delay))


def should_retry(status: data.ResultStatus, policy: data.RetryPolicy | None, retried: int) -> bool:
    """Only retryable failures, with a real policy and attempts left, are retried."""
    return (
        status == data.ResultStatus.ERROR_AND_RETRY
        and policy is not None
        and policy.type != data.RetryType.NONE
        and retried < policy.max_retry
    )


def final_status(status: data.ResultStatus, policy: data.RetryPolicy | None, retried: int) -> data.ResultStatus:
    """A retryable failure that will not be retried is reported as MAX_RETRY."""
    if status == data.ResultStatus.ERROR_AND_RETRY and not should_retry(status, policy, retried):
        return data.ResultStatus.MAX_RETRY
    return status


def retry_job(job: data.Job, policy: data.RetryPolicy, failed_at: int) -> data.Job:
    """The next attempt: same id, args and settings, `retried` + 1, due after the policy's delay."""
    return rerun_of(job, run_after_time=failed_at + retry_delay_ms(policy, job.data.retried),
                    retried=job.data.retried + 1)


EXACT_RETRY_SUM = 10_000  # retries whose delays are added one by one; past it, a bound is used


def longest_run_ms(policy: data.RetryPolicy | None, timeout_ms: int) -> float | None:
    """The longest a job can take from its first attempt to its final result: every attempt
    at its timeout plus every retry delay; None when an attempt has no timeout (0), or when the
    delays cannot be computed (a policy stored before such policies were refused).

    In bounded work: a worker may allow 2**32 - 1 retries, and adding every delay would hold the
    event loop for minutes. Delays never shrink from one retry to the next, so past
    EXACT_RETRY_SUM retries the last delay times the number of retries bounds their sum."""
    if timeout_ms == 0:
        return None
    if policy is None or policy.type == data.RetryType.NONE:
        return timeout_ms
    try:
        if policy.max_retry <= EXACT_RETRY_SUM:
            delays = sum(retry_delay_ms(policy, n) for n in range(policy.max_retry))
        else:
            delays = policy.max_retry * retry_delay_ms(policy, policy.max_retry - 1)
    except (OverflowError, ValueError):  # inf or NaN delays
        return None
    return (policy.max_retry + 1) * timeout_ms + delays
