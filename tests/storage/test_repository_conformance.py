"""Conformance suite for every Repository driver: what a user of the storage layer notices.

Runs against each driver listed in ``conftest.DRIVERS``. Times are epoch milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from jobworkerp.errors import AlreadyExists, Unavailable
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.rdb import Repository

pytestmark = pytest.mark.timeout(30)

U64_MAX = (1 << 64) - 1


# --- builders -------------------------------------------------------------------------
def worker_data(name: str, **fields: object) -> data.WorkerData:
    """A minimal valid worker definition; ``fields`` override any WorkerData field."""
    base: dict[str, object] = {"name": name, "runner_id": data.RunnerId(value=1), "runner_settings": b""}
    base.update(fields)
    return data.WorkerData(**base)


def full_worker_data(name: str) -> data.WorkerData:
    """Every WorkerData field set to a non-default value."""
    return data.WorkerData(
        name=name,
        runner_id=data.RunnerId(value=3),
        runner_settings=b"\x00\x01settings\xff",
        retry_policy=data.RetryPolicy(
            type=data.RetryType.EXPONENTIAL, interval=1500, max_interval=60000, max_retry=7, basis=1.5
        ),
        periodic_interval=5000,
        channel="gpu",
        queue_type=data.QueueType.WITH_BACKUP,
        response_type=data.ResponseType.LISTEN_AFTER,
        store_success=True,
        store_failure=True,
        next_workers=[data.WorkerId(value=11), data.WorkerId(value=2)],
        use_static=True,
    )


def job(job_id: int, worker_id: int = 1, **fields: object) -> data.Job:
    """A job with every persisted field filled; ``fields`` override JobData fields."""
    base: dict[str, object] = {
        "worker_id": data.WorkerId(value=worker_id),
        "args": b"args-" + str(job_id).encode(),
        "uniq_key": None,
        "enqueue_time": 1_700_000_000_000,
        "grabbed_until_time": 0,
        "run_after_time": 0,
        "retried": 0,
        "priority": data.Priority.MEDIUM,
        "timeout": 0,
    }
    base.update(fields)
    return data.Job(id=data.JobId(value=job_id), data=data.JobData(**base))


def result(result_id: int, job_id: int, end_time: int, **fields: object) -> data.JobResult:
    """A job result with every persisted field filled; ``fields`` override JobResultData."""
    base: dict[str, object] = {
        "job_id": data.JobId(value=job_id),
        "worker_id": data.WorkerId(value=2),
        "args": b"a",
        "uniq_key": None,
        "status": data.ResultStatus.SUCCESS,
        "output": data.ResultOutput(items=[b"out"]),
        "retried": 0,
        "priority": data.Priority.MEDIUM,
        "timeout": 0,
        "enqueue_time": 10,
        "run_after_time": 0,
        "start_time": end_time - 1,
        "end_time": end_time,
    }
    base.update(fields)
    return data.JobResult(id=data.JobResultId(value=result_id), data=data.JobResultData(**base))


def ids(items: list) -> list[int]:
    return [item.id.value for item in items]


# --- runners --------------------------------------------------------------------------
async def test_builtin_runners_are_seeded_newest_id_first(repo: Repository) -> None:
    runners = await repo.list_runners()
    assert ids(runners) == [4, 3, 2, 1]
    assert [(r.data.name, r.data.runner_type) for r in reversed(runners)] == [
        ("COMMAND", data.RunnerType.COMMAND),
        ("HTTP_REQUEST", data.RunnerType.HTTP_REQUEST),
        ("GRPC_UNARY", data.RunnerType.GRPC_UNARY),
        ("DOCKER", data.RunnerType.DOCKER),
    ]
    assert await repo.count_runners() == 4
    assert await repo.find_runner(5) is None  # SLACK_NOTIFICATION is not shipped


async def test_find_runner_returns_identity_without_proto_texts(repo: Repository) -> None:
    runner = await repo.find_runner(2)
    assert runner == data.Runner(
        id=data.RunnerId(value=2), data=data.RunnerData(name="HTTP_REQUEST", runner_type=data.RunnerType.HTTP_REQUEST)
    )
    assert runner.data.runner_settings_proto == "" and runner.data.job_args_proto == ""


async def test_upsert_runner_inserts_then_refreshes_by_id(repo: Repository) -> None:
    plugin_id = 7_000_000_000_000_000_001
    plugin = data.Runner(id=data.RunnerId(value=plugin_id), data=data.RunnerData(name="hello"))
    await repo.upsert_runner(plugin, "libhello.so")
    assert await repo.find_runner(plugin_id) == plugin

    renamed = data.Runner(id=data.RunnerId(value=plugin_id), data=data.RunnerData(name="hello2"))
    await repo.upsert_runner(renamed, "libhello.so")
    assert await repo.find_runner(plugin_id) == renamed
    assert await repo.count_runners() == 5
    assert ids(await repo.list_runners(limit=2)) == [plugin_id, 4]
    assert ids(await repo.list_runners(limit=2, offset=2)) == [3, 2]


async def test_upsert_runner_with_a_taken_name_is_already_exists(repo: Repository) -> None:
    clash = data.Runner(id=data.RunnerId(value=99), data=data.RunnerData(name="COMMAND"))
    with pytest.raises(AlreadyExists, match="COMMAND"):
        await repo.upsert_runner(clash, "libother.so")


async def test_delete_runner(repo: Repository) -> None:
    assert await repo.delete_runner(4) is True
    assert await repo.delete_runner(4) is False
    assert await repo.find_runner(4) is None
    assert await repo.count_runners() == 3


# --- workers --------------------------------------------------------------------------
async def test_worker_round_trips_every_field(repo: Repository) -> None:
    definition = full_worker_data("full")
    worker_id = await repo.create_worker(definition)
    expected = data.Worker(id=data.WorkerId(value=worker_id), data=definition)
    assert await repo.find_worker(worker_id) == expected
    assert await repo.find_worker_by_name("full") == expected
    assert await repo.list_workers() == [expected]
    assert await repo.count_workers() == 1


async def test_worker_defaults_read_back_as_upstream(repo: Repository) -> None:
    """No channel → default channel (absent); no retry policy → {NONE, 0, 0, 0, 2.0}."""
    worker_id = await repo.create_worker(worker_data("plain"))
    found = (await repo.find_worker(worker_id)).data
    assert found.channel is None
    assert found.retry_policy == data.RetryPolicy(
        type=data.RetryType.NONE, interval=0, max_interval=0, max_retry=0, basis=2.0
    )
    assert found.next_workers == []
    assert found.runner_settings == b""
    assert (found.use_static, found.store_success, found.store_failure) == (False, False, False)


async def test_missing_workers(repo: Repository) -> None:
    assert await repo.find_worker(12345) is None
    assert await repo.find_worker_by_name("nope") is None
    assert await repo.delete_worker(12345) is False
    assert await repo.update_worker(12345, worker_data("ghost")) is False
    assert await repo.count_workers() == 0


async def test_worker_ids_autoincrement_and_are_not_reused(repo: Repository) -> None:
    first = await repo.create_worker(worker_data("a"))
    second = await repo.create_worker(worker_data("b"))
    assert first >= 1 and second > first
    assert await repo.delete_worker(second) is True
    assert await repo.create_worker(worker_data("c")) > second


async def test_update_worker_replaces_the_whole_definition(repo: Repository) -> None:
    worker_id = await repo.create_worker(full_worker_data("w"))
    replacement = worker_data("w-renamed", runner_settings=b"new")
    assert await repo.update_worker(worker_id, replacement) is True
    found = await repo.find_worker(worker_id)
    assert found.data.name == "w-renamed"
    assert found.data.channel is None
    assert found.data.next_workers == []
    assert found.data.retry_policy.type == data.RetryType.NONE
    assert found.data.runner_settings == b"new"
    assert await repo.find_worker_by_name("w") is None
    assert await repo.update_worker(worker_id, full_worker_data("w-renamed")) is True  # own name is no clash


async def test_duplicate_worker_name_is_already_exists(repo: Repository) -> None:
    await repo.create_worker(worker_data("taken"))
    other = await repo.create_worker(worker_data("other"))
    with pytest.raises(AlreadyExists, match="worker name 'taken' already exists"):
        await repo.create_worker(worker_data("taken"))
    with pytest.raises(AlreadyExists, match="worker name 'taken' already exists"):
        await repo.update_worker(other, worker_data("taken"))
    assert (await repo.find_worker(other)).data.name == "other"
    assert await repo.count_workers() == 2


async def test_delete_worker(repo: Repository) -> None:
    worker_id = await repo.create_worker(worker_data("gone"))
    assert await repo.delete_worker(worker_id) is True
    assert await repo.find_worker(worker_id) is None
    assert await repo.find_worker_by_name("gone") is None
    assert await repo.create_worker(worker_data("gone")) > worker_id  # the name is free again


async def test_list_workers_newest_first_with_limit_and_offset(repo: Repository) -> None:
    created = [await repo.create_worker(worker_data(f"w{i}")) for i in range(5)]
    newest_first = list(reversed(created))
    assert ids(await repo.list_workers()) == newest_first
    assert ids(await repo.list_workers(limit=2)) == newest_first[:2]
    assert ids(await repo.list_workers(limit=2, offset=2)) == newest_first[2:4]
    assert ids(await repo.list_workers(offset=3)) == newest_first[3:]
    assert ids(await repo.list_workers(limit=-1)) == newest_first
    assert await repo.list_workers(limit=0) == []
    assert await repo.list_workers(limit=10, offset=10) == []
    assert await repo.count_workers() == 5


# --- jobs -----------------------------------------------------------------------------
async def test_job_round_trips_every_field(repo: Repository) -> None:
    stored = job(
        7_100_000_000_000_000_000,
        worker_id=42,
        uniq_key="k1",
        enqueue_time=1_700_000_000_123,
        grabbed_until_time=1_700_000_005_000,
        run_after_time=1_700_000_001_000,
        retried=3,
        priority=data.Priority.HIGH,
        timeout=U64_MAX,  # full 64 bits survive
    )
    await repo.create_job(stored)
    assert await repo.find_job(stored.id.value) == stored
    assert await repo.list_jobs() == [stored]
    assert await repo.count_jobs() == 1


@pytest.mark.parametrize("timeout_ms", [0, 1, 2**31, 2**32 + 5, 2**63 - 1, 2**63, U64_MAX])
async def test_job_timeout_keeps_64_bits(repo: Repository, timeout_ms: int) -> None:
    await repo.create_job(job(1, timeout=timeout_ms))
    assert (await repo.find_job(1)).data.timeout == timeout_ms


async def test_job_without_lease_reads_back_as_not_grabbed(repo: Repository) -> None:
    await repo.create_job(job(1, grabbed_until_time=None, priority=data.Priority.LOW))
    found = (await repo.find_job(1)).data
    assert (found.grabbed_until_time or 0) == 0
    assert found.priority == data.Priority.LOW


async def test_create_job_clashes_are_already_exists(repo: Repository) -> None:
    await repo.create_job(job(1, uniq_key="once"))
    with pytest.raises(AlreadyExists, match="once"):
        await repo.create_job(job(2, uniq_key="once"))
    with pytest.raises(AlreadyExists, match="1"):
        await repo.create_job(job(1, uniq_key="other"))
    assert await repo.find_job(2) is None
    assert (await repo.find_job(1)).data.uniq_key == "once"
    # jobs without a uniq_key never clash with each other
    await repo.create_job(job(3))
    await repo.create_job(job(4))
    assert await repo.count_jobs() == 3


async def test_upsert_job_inserts_then_replaces_by_id(repo: Repository) -> None:
    await repo.upsert_job(job(1, uniq_key="u", retried=0))
    retry = job(1, uniq_key="u", retried=1, run_after_time=5000, grabbed_until_time=0)
    await repo.upsert_job(retry)
    assert await repo.find_job(1) == retry
    assert await repo.count_jobs() == 1


async def test_upsert_job_does_not_steal_another_jobs_uniq_key(repo: Repository) -> None:
    await repo.create_job(job(1, uniq_key="mine"))
    await repo.create_job(job(2))
    with pytest.raises(AlreadyExists, match="mine"):
        await repo.upsert_job(job(2, uniq_key="mine"))
    assert await repo.find_job(1) is not None
    assert (await repo.find_job(2)).data.uniq_key is None


async def test_job_extras_are_kept_with_the_row_and_go_with_it(repo: Repository) -> None:
    await repo.create_job(job(1), b"\x0a\x03abc")
    await repo.create_job(job(2))
    assert await repo.find_job_extras([1, 2, 3]) == {1: b"\x0a\x03abc"}
    assert await repo.find_job(1) == job(1)  # the v0.7 job reads back as it was
    await repo.upsert_job(job(2, retried=1), b"\x18\x01")  # a re-run writes what it carries
    await repo.upsert_job(job(1, retried=1))  # ... and none, when it carries none
    assert await repo.find_job_extras([1, 2]) == {2: b"\x18\x01"}
    assert await repo.delete_job(2)
    assert await repo.find_job_extras([2]) == {}
    assert await repo.find_job_extras([]) == {}


async def test_delete_job_frees_its_uniq_key(repo: Repository) -> None:
    await repo.create_job(job(1, uniq_key="k"))
    assert await repo.delete_job(1) is True
    assert await repo.delete_job(1) is False
    assert await repo.find_job(1) is None
    await repo.create_job(job(2, uniq_key="k"))
    assert await repo.count_jobs() == 1


async def test_a_delete_that_expects_no_claim_loses_to_a_claim(repo: Repository) -> None:
    await repo.create_job(job(1, grabbed_until_time=0))
    assert await repo.claim_job(1, 0, 5_000)
    assert await repo.delete_job(1, grabbed_until=0) is False  # claimed first: the row stays
    assert await repo.find_job(1) is not None
    assert await repo.delete_job(1, grabbed_until=5_000) is True


async def test_list_jobs_newest_first_with_limit_and_offset(repo: Repository) -> None:
    for job_id in (30, 10, 50, 20, 40):
        await repo.create_job(job(job_id))
    assert ids(await repo.list_jobs()) == [50, 40, 30, 20, 10]
    assert ids(await repo.list_jobs(limit=2, offset=1)) == [40, 30]
    assert ids(await repo.list_jobs(limit=None, offset=None)) == [50, 40, 30, 20, 10]
    assert await repo.count_jobs() == 5


async def test_keyset_paging_skips_no_row_when_earlier_rows_are_deleted(repo: Repository) -> None:
    """Paging by `before_id` (the last id of the previous page) sees every row that stays, even
    when rows of pages already read are deleted meanwhile; OFFSET paging would skip as many."""
    for job_id in (10, 20, 30, 40, 50, 60):
        await repo.create_job(job(job_id))
    first = await repo.list_jobs(2)
    assert ids(first) == [60, 50]
    for job_id in ids(first):  # e.g. the jobs ended while the next page was being asked for
        await repo.delete_job(job_id)
    assert ids(await repo.list_jobs(2, before_id=first[-1].id.value)) == [40, 30]
    assert ids(await repo.list_jobs(None, before_id=30)) == [20, 10]
    assert await repo.list_jobs(2, before_id=10) == []


# --- due jobs and leases --------------------------------------------------------------
NOW = 1_700_000_000_000


async def test_find_due_jobs_filters_time_window_lease_and_worker(repo: Repository) -> None:
    await repo.create_job(job(1, worker_id=1, run_after_time=NOW - 10))  # due
    await repo.create_job(job(2, worker_id=1, run_after_time=NOW + 500))  # due within window
    await repo.create_job(job(3, worker_id=1, run_after_time=NOW + 5000))  # beyond window
    await repo.create_job(job(4, worker_id=1, run_after_time=0))  # instant jobs are not scheduled
    await repo.create_job(job(5, worker_id=1, run_after_time=NOW - 5, grabbed_until_time=NOW + 1))  # leased
    await repo.create_job(job(6, worker_id=1, run_after_time=NOW - 4, grabbed_until_time=NOW))  # lease just ended
    await repo.create_job(job(7, worker_id=9, run_after_time=NOW - 20))  # other worker
    await repo.create_job(job(8, worker_id=2, run_after_time=NOW - 30))  # second listed worker

    due = await repo.find_due_jobs([1, 2], run_before=NOW + 1000, now=NOW, limit=100)
    assert ids(due) == [8, 1, 6, 2]
    assert ids(await repo.find_due_jobs([9], run_before=NOW + 1000, now=NOW, limit=100)) == [7]
    assert await repo.find_due_jobs([], run_before=NOW + 1000, now=NOW, limit=100) == []
    assert await repo.find_due_jobs([3], run_before=NOW + 1000, now=NOW, limit=100) == []
    assert ids(await repo.find_due_jobs([1, 2], run_before=NOW + 1000, now=NOW, limit=2)) == [8, 1]


async def test_find_due_jobs_breaks_time_ties_by_priority(repo: Repository) -> None:
    await repo.create_job(job(1, run_after_time=NOW, priority=data.Priority.LOW))
    await repo.create_job(job(2, run_after_time=NOW, priority=data.Priority.HIGH))
    await repo.create_job(job(3, run_after_time=NOW, priority=data.Priority.MEDIUM))
    await repo.create_job(job(4, run_after_time=NOW - 1, priority=data.Priority.LOW))
    due = await repo.find_due_jobs([1], run_before=NOW, now=NOW, limit=10)
    assert ids(due) == [4, 2, 3, 1]
    assert due[1] == job(2, run_after_time=NOW, priority=data.Priority.HIGH)


async def test_claim_job_is_compare_and_set(repo: Repository) -> None:
    await repo.create_job(job(1, run_after_time=NOW - 1))
    assert await repo.claim_job(1, expected_grabbed_until=0, grabbed_until=NOW + 60_000) is True
    assert await repo.claim_job(1, expected_grabbed_until=0, grabbed_until=NOW + 99_000) is False
    assert (await repo.find_job(1)).data.grabbed_until_time == NOW + 60_000
    assert await repo.find_due_jobs([1], run_before=NOW, now=NOW, limit=10) == []
    # after the lease ends the job is due again, and can be re-claimed with the current value
    assert ids(await repo.find_due_jobs([1], run_before=NOW, now=NOW + 60_000, limit=10)) == [1]
    assert await repo.claim_job(1, expected_grabbed_until=NOW + 60_000, grabbed_until=NOW + 120_000) is True
    assert await repo.claim_job(404, expected_grabbed_until=0, grabbed_until=1) is False


async def test_a_claim_based_on_an_older_read_of_a_rewritten_row_fails(repo: Repository) -> None:
    """ABA: the row is claimed, run, and rewritten by its re-run with a lease of 0 again; a
    fetcher that read it before must not claim the new row with its old copy."""
    await repo.create_job(job(1, run_after_time=NOW - 1))
    (seen,) = await repo.find_due_jobs([1], run_before=NOW, now=NOW, limit=10)
    assert await repo.claim_job(1, 0, NOW + 60_000, run_after_time=NOW - 1)  # the first fetcher
    await repo.upsert_job(job(1, run_after_time=NOW + 200, retried=1))  # its retry, lease 0 again
    assert not await repo.claim_job(1, seen.data.grabbed_until_time or 0, NOW + 60_000,
                                    run_after_time=seen.data.run_after_time)  # the stale read loses
    assert await repo.claim_job(1, 0, NOW + 60_000, run_after_time=NOW + 200)  # a fresh read wins


async def test_only_one_of_many_concurrent_claims_wins(repo: Repository) -> None:
    await repo.create_job(job(1, run_after_time=NOW - 1))
    wins: list[int] = []

    async def claim(lease: int) -> None:
        if await repo.claim_job(1, expected_grabbed_until=0, grabbed_until=lease):
            wins.append(lease)

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(claim, NOW + 1000 + i)
    assert len(wins) == 1
    assert (await repo.find_job(1)).data.grabbed_until_time == wins[0]


# --- job results ----------------------------------------------------------------------
async def test_result_round_trips_persisted_fields_and_defaults_the_rest(repo: Repository) -> None:
    stored = result(
        9_000_000_000_000_000_001,
        job_id=5,
        end_time=2000,
        worker_id=data.WorkerId(value=3),
        args=b"\x01\x02",
        uniq_key="uk",
        status=data.ResultStatus.MAX_RETRY,
        output=data.ResultOutput(items=[b"one", b"", b"\xff"]),
        retried=4,
        priority=data.Priority.HIGH,
        timeout=U64_MAX,
        enqueue_time=100,
        run_after_time=200,
        start_time=1500,
    )
    # fields the service re-fills from the worker definition are not persisted
    sent = data.JobResult.parse(bytes(stored))
    sent.data.worker_name = "w"
    sent.data.max_retry = 9
    sent.data.response_type = data.ResponseType.DIRECT
    sent.data.store_success = sent.data.store_failure = True
    await repo.add_results([sent])
    assert await repo.find_result(stored.id.value) == stored
    assert await repo.find_result(1) is None


async def test_add_results_batch_of_500_in_one_call(repo: Repository) -> None:
    batch = [result(1000 + i, job_id=i % 10, end_time=10_000 + i) for i in range(500)]
    await repo.add_results(batch)
    assert await repo.count_results() == 500
    assert await repo.find_result(1499) == batch[-1]
    await repo.add_results([])
    assert await repo.count_results() == 500


async def test_add_results_is_all_or_nothing_on_an_id_clash(repo: Repository) -> None:
    await repo.add_results([result(1, job_id=1, end_time=1)])
    with pytest.raises(AlreadyExists, match="1"):
        await repo.add_results([result(2, job_id=1, end_time=2), result(1, job_id=1, end_time=3)])
    assert await repo.count_results() == 1
    assert await repo.find_result(2) is None


async def test_list_results_by_job_id_desc_then_id_desc(repo: Repository) -> None:
    await repo.add_results(
        [
            result(1, job_id=10, end_time=5),
            result(2, job_id=30, end_time=1),
            result(3, job_id=20, end_time=9),
            result(4, job_id=30, end_time=2),
            result(5, job_id=10, end_time=7),
        ]
    )
    assert ids(await repo.list_results()) == [4, 2, 3, 5, 1]
    assert ids(await repo.list_results(limit=2)) == [4, 2]
    assert ids(await repo.list_results(limit=2, offset=3)) == [5, 1]
    assert ids(await repo.list_results(limit=-5, offset=4)) == [1]


async def test_results_of_one_job_newest_end_time_first(repo: Repository) -> None:
    await repo.add_results(
        [
            result(1, job_id=7, end_time=300),
            result(2, job_id=7, end_time=100),
            result(3, job_id=7, end_time=500),
            result(4, job_id=8, end_time=900),
            result(5, job_id=7, end_time=200),
        ]
    )
    assert ids(await repo.list_results_by_job_id(7)) == [3, 1, 5, 2]
    assert ids(await repo.list_results_by_job_id(7, limit=2)) == [3, 1]
    assert await repo.list_results_by_job_id(404) == []
    assert (await repo.latest_result_of_job(7)).id.value == 3
    assert (await repo.latest_result_of_job(8)).id.value == 4
    assert await repo.latest_result_of_job(404) is None


async def test_list_results_by_job_id_is_capped_at_1000_by_default(repo: Repository) -> None:
    await repo.add_results([result(i + 1, job_id=1, end_time=i) for i in range(1005)])
    found = await repo.list_results_by_job_id(1)
    assert len(found) == 1000
    assert found[0].id.value == 1005


async def test_delete_result(repo: Repository) -> None:
    await repo.add_results([result(1, job_id=1, end_time=1), result(2, job_id=1, end_time=2)])
    assert await repo.delete_result(2) is True
    assert await repo.delete_result(2) is False
    assert await repo.count_results() == 1
    assert (await repo.latest_result_of_job(1)).id.value == 1


# --- lifecycle ------------------------------------------------------------------------
async def test_reopen_keeps_data_and_does_not_duplicate_seeds(
    repo: Repository, repo_factory: Callable[[], Repository]
) -> None:
    worker_id = await repo.create_worker(full_worker_data("persist"))
    await repo.create_job(job(1, uniq_key="p", timeout=U64_MAX))
    await repo.add_results([result(1, job_id=1, end_time=1)])
    await repo.aclose()

    reopened = repo_factory()
    await reopened.open()
    try:
        assert await reopened.count_runners() == 4
        assert ids(await reopened.list_runners()) == [4, 3, 2, 1]
        assert (await reopened.find_worker(worker_id)).data == full_worker_data("persist")
        assert (await reopened.find_job(1)).data.timeout == U64_MAX
        assert await reopened.find_result(1) == result(1, job_id=1, end_time=1)
        assert await reopened.create_worker(worker_data("next")) > worker_id
    finally:
        await reopened.aclose()
    await repo.open()  # the fixture closes it again


async def test_open_twice_is_harmless(repo: Repository) -> None:
    await repo.open()
    assert await repo.count_runners() == 4


async def test_calls_after_close_are_unavailable(repo: Repository) -> None:
    await repo.aclose()
    with pytest.raises(Unavailable):
        await repo.count_workers()
    await repo.open()  # the fixture closes it again


@pytest.mark.timeout(120)  # CPU-bound: the memory driver decodes every stored result per list_results
async def test_concurrent_writers_and_a_reader_do_not_error(repo: Repository) -> None:
    """Tasks share one driver; the driver (not the caller) serialises access.

    Both writers interleave batch transactions with single-row writes, which is what breaks
    when two threads use one connection at once ("cannot start a transaction within a
    transaction", writes committed by the other task's COMMIT or lost by its ROLLBACK).
    """
    rounds, batch = 30, 10  # batches of several rows; more rows only cost the memory driver time

    async def writer(first_id: int) -> None:
        for i in range(rounds):
            job_id = first_id + i
            await repo.create_worker(worker_data(f"cw{job_id}"))
            await repo.create_job(job(job_id, run_after_time=NOW))
            start = job_id * batch
            await repo.add_results([result(start + n, job_id=job_id, end_time=n) for n in range(batch)])

    async def reader() -> None:
        for _ in range(rounds):
            await repo.list_workers(limit=10)
            await repo.find_due_jobs([1], run_before=NOW, now=NOW, limit=10)
            await repo.list_results(limit=10)
            await repo.count_results()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer, 1_000)
        nursery.start_soon(writer, 2_000)
        nursery.start_soon(reader)

    assert await repo.count_workers() == 2 * rounds
    assert await repo.count_jobs() == 2 * rounds
    assert await repo.count_results() == 2 * rounds * batch
