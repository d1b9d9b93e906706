"""Table tests of the pure scheduling rules: retry delays, periodic next runs, routing, chains."""

from __future__ import annotations

import pytest

from jobworkerp.lifecycle import chain, periodic, retry
from jobworkerp.lifecycle.placement import Route, route
from jobworkerp.proto.jobworkerp import data

pytestmark = pytest.mark.timeout(10)

E, L, C, N = data.RetryType.EXPONENTIAL, data.RetryType.LINEAR, data.RetryType.CONSTANT, data.RetryType.NONE
ERR, OK = data.ResultStatus.ERROR_AND_RETRY, data.ResultStatus.SUCCESS


def policy(kind: data.RetryType, interval: int = 100, max_retry: int = 3, basis: float = 2.0,
           max_interval: int = 0) -> data.RetryPolicy:
    return data.RetryPolicy(type=kind, interval=interval, max_retry=max_retry, basis=basis, max_interval=max_interval)


@pytest.mark.parametrize(
    ("p", "delays"),
    [
        (policy(C), [100, 100, 100]),
        (policy(L), [100, 200, 300]),
        (policy(E), [100, 200, 400]),
        (policy(E, basis=3.0), [100, 300, 900]),
        (policy(E, max_interval=250), [100, 200, 250]),
        (policy(L, max_interval=150), [100, 150, 150]),
        (policy(N), [0, 0, 0]),
    ],
)
def test_retry_delay_per_policy(p: data.RetryPolicy, delays: list[int]) -> None:
    assert [retry.retry_delay_ms(p, r) for r in range(3)] == delays


@pytest.mark.parametrize(
    ("status", "p", "retried", "retries", "final"),
    [
        (ERR, policy(E), 0, True, ERR),
        (ERR, policy(E), 2, True, ERR),
        (ERR, policy(E), 3, False, data.ResultStatus.MAX_RETRY),
        (ERR, policy(E, max_retry=0), 0, False, data.ResultStatus.MAX_RETRY),  # 0 = no retries
        (ERR, policy(N, max_retry=5), 0, False, data.ResultStatus.MAX_RETRY),
        (ERR, None, 0, False, data.ResultStatus.MAX_RETRY),
        (OK, policy(E), 0, False, OK),
        (data.ResultStatus.FATAL_ERROR, policy(E), 0, False, data.ResultStatus.FATAL_ERROR),
        (data.ResultStatus.OTHER_ERROR, policy(E), 0, False, data.ResultStatus.OTHER_ERROR),
        (data.ResultStatus.CANCELLED, policy(E), 0, False, data.ResultStatus.CANCELLED),
    ],
)
def test_retry_decision_and_final_status(status, p, retried, retries, final) -> None:
    assert retry.should_retry(status, p, retried) is retries
    if not retries:
        assert retry.final_status(status, p, retried) == final


def test_retry_job_keeps_identity_and_counts_up() -> None:
    job = data.Job(id=data.JobId(value=9), data=data.JobData(
        worker_id=data.WorkerId(value=2), args=b"a", uniq_key="u", enqueue_time=5, retried=1,
        priority=data.Priority.HIGH, timeout=7, grabbed_until_time=123))
    again = retry.retry_job(job, policy(E), failed_at=1000)
    assert again.id.value == 9 and again.data.retried == 2
    assert again.data.run_after_time == 1000 + 200
    assert (again.data.args, again.data.uniq_key, again.data.enqueue_time, again.data.priority, again.data.timeout) == (
        b"a", "u", 5, data.Priority.HIGH, 7)
    assert again.data.grabbed_until_time == 0


@pytest.mark.parametrize(
    ("run_after", "start", "now", "expected"),
    [
        (10_000, 10_050, 10_100, 13_000),  # on time: previous scheduled time + interval
        (0, 10_050, 10_100, 13_050),  # never scheduled: based on its start
        (10_000, 10_050, 13_000, 13_000),  # exactly on the grid point: due now
        (10_000, 10_050, 17_500, 19_000),  # late by two ticks: skipped, phase kept
        (10_000, 10_050, 12_999, 13_000),
    ],
)
def test_next_periodic_run(run_after: int, start: int, now: int, expected: int) -> None:
    assert periodic.next_periodic_run_ms(run_after, start, 3000, now) == expected


def test_next_periodic_run_keeps_phase_after_a_year() -> None:
    year = 365 * 24 * 3600 * 1000
    nxt = periodic.next_periodic_run_ms(1_000, 1_000, 3000, 1_000 + year + 1)
    assert (nxt - 1_000) % 3000 == 0 and nxt > 1_000 + year


def worker(response=data.ResponseType.NO_RESULT, queue=data.QueueType.NORMAL, periodic_ms: int = 0) -> data.WorkerData:
    return data.WorkerData(response_type=response, queue_type=queue, periodic_interval=periodic_ms)


NOW, FETCH = 1_000_000, 1000


@pytest.mark.parametrize(
    ("wd", "run_after", "where"),
    [
        (worker(response=data.ResponseType.DIRECT), 0, Route.QUEUE),
        (worker(response=data.ResponseType.DIRECT, queue=data.QueueType.WITH_BACKUP), 0, Route.QUEUE),
        (worker(periodic_ms=5000), NOW, Route.RDB),
        (worker(), NOW + FETCH + 1, Route.RDB),  # future job
        (worker(), NOW + FETCH, Route.QUEUE),  # near future: queued, the executor waits
        (worker(queue=data.QueueType.WITH_BACKUP), 0, Route.RDB_AND_QUEUE),
        (worker(queue=data.QueueType.WITH_BACKUP), NOW + 5000, Route.RDB),
        (worker(queue=data.QueueType.FORCED_RDB), NOW, Route.RDB),
        (worker(), 0, Route.QUEUE),
    ],
)
def test_routing_table(wd: data.WorkerData, run_after: int, where: Route) -> None:
    assert route(wd, run_after, NOW, FETCH) == where


def test_chain_makes_one_job_per_non_empty_item() -> None:
    previous = data.Job(id=data.JobId(value=1), data=data.JobData(uniq_key="k", priority=data.Priority.LOW, timeout=9))
    nxt = data.Worker(id=data.WorkerId(value=3), data=data.WorkerData())
    args = list(chain.chained_args([b"a", b"", b"b"]))
    assert args == [b"a", b"b"]
    job = chain.chained_job(previous, nxt, b"a", 77, now=5)
    assert job.id.value == 77 and job.data.worker_id.value == 3 and job.data.args == b"a"
    assert job.data.priority == data.Priority.LOW and job.data.timeout == 9 and job.data.uniq_key is None


def test_longest_run_covers_every_attempt_and_delay() -> None:
    assert retry.longest_run_ms(None, 400) == 400
    assert retry.longest_run_ms(policy(data.RetryType.CONSTANT, interval=300, max_retry=2), 400) == 3 * 400 + 600
    assert retry.longest_run_ms(policy(data.RetryType.CONSTANT, interval=300, max_retry=2), 0) is None
