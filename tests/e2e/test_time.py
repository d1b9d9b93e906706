"""Scheduling over real gRPC in real time: the wiring behind the virtual-time tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, ServerProcess, connect, run
from tests.e2e.servers import STORAGE_MODES, server_in_mode

pytestmark = pytest.mark.timeout(120)
STORE_ALL = {"store_success": True, "store_failure": True}


@pytest.fixture(scope="module", params=STORAGE_MODES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per storage mode (Standalone, Scalable), with a channel `one` of concurrency 1."""
    env = {"JOB_QUEUE_FETCH_INTERVAL": "500", "WORKER_CHANNELS": "one", "WORKER_CHANNEL_CONCURRENCIES": "1"}
    with server_in_mode(request.param, tmp_path_factory.mktemp(f"time-{request.param}"), env) as proc:
        yield proc


def command_worker(name: str, command: str, **kwargs) -> data.WorkerData:
    return data.WorkerData(name=name, runner_id=data.RunnerId(value=1),
                           runner_settings=bytes(runner_pb.CommandRunnerSettings(name=command)), **kwargs)


def args(*argv: str) -> bytes:
    return bytes(runner_pb.CommandArgs(args=list(argv)))


def now_ms() -> int:
    return int(time.time() * 1000)


async def listen(c: Client, worker_id: data.WorkerId, job_id: data.JobId) -> data.JobResult:
    return await c.job_result.listen(svc.ListenRequest(job_id=job_id, worker_id=worker_id, timeout=60_000))


def test_job_scheduled_two_seconds_ahead_starts_at_its_time_not_before(server: ServerProcess) -> None:
    """How late it may start is checked in virtual time (tests/worker); here: the time goes
    through the wire and the RDB intact, and the job does not run early."""
    async def scenario() -> tuple[int, data.JobResult]:
        async with connect(server.port) as c:
            w = (await c.worker.create(command_worker("at-time", "true", **STORE_ALL))).id
            run_at = now_ms() + 2000
            job_id = (await c.job.enqueue(svc.JobRequest(worker_id=w, args=args(), run_after_time=run_at))).id
            return run_at, await listen(c, w, job_id)

    run_at, result = run(scenario())
    assert result.data.status == data.ResultStatus.SUCCESS
    assert result.data.run_after_time == run_at
    assert result.data.start_time >= run_at


async def successes_of(c: Client, job_id: data.JobId) -> list[data.JobResult]:
    results = [r async for r in c.job_result.find_list_by_job_id(svc.FindListByJobIdRequest(job_id=job_id))]
    return sorted((r for r in results if r.data.status == data.ResultStatus.SUCCESS), key=lambda r: r.data.start_time)


def test_periodic_worker_runs_on_its_phase_until_deleted(server: ServerProcess, tmp_path: Path) -> None:
    marks = tmp_path / "ticks"
    interval = 1500

    async def scenario() -> tuple[int, list[data.JobResult], int, int]:
        async with connect(server.port) as c:
            w = (await c.worker.create(command_worker("ticker", "sh", periodic_interval=interval, **STORE_ALL))).id
            phase = now_ms() + 300
            job_id = (await c.job.enqueue(svc.JobRequest(
                worker_id=w, args=args("-c", f"echo tick >> {marks}"), run_after_time=phase))).id
            while len(await successes_of(c, job_id)) < 3:  # noqa: ASYNC110 - stored results are the only signal
                await asyncio.sleep(0.1)
            assert (await c.job.delete(job_id)).is_success
            runs_at_delete = len(marks.read_text().split())
            results = await successes_of(c, job_id)
            await asyncio.sleep(2 * interval / 1000)  # a series still alive would run again meanwhile
            return phase, results, runs_at_delete, len(marks.read_text().split())

    phase, results, runs_at_delete, runs_later = run(scenario())
    # Every run is due on the grid phase + k * interval (a late run does not shift the series),
    # one run per grid point, and none starts before its point.
    due = [r.data.run_after_time for r in results]
    assert len(due) >= 3 and due[0] == phase, (phase, due)
    assert all((t - phase) % interval == 0 for t in due), [t - phase for t in due]
    assert due == sorted(set(due)), [t - phase for t in due]
    assert all(r.data.start_time >= r.data.run_after_time for r in results), [
        r.data.start_time - r.data.run_after_time for r in results]
    assert runs_later == runs_at_delete >= len(results)  # deleting stopped the series


def test_exponential_retry_with_max_interval_cap(server: ServerProcess) -> None:
    policy = data.RetryPolicy(type=data.RetryType.EXPONENTIAL, interval=100, basis=2.0, max_retry=3, max_interval=250)

    async def scenario() -> tuple[data.JobResult, list[data.JobResult]]:
        async with connect(server.port) as c:
            w = (await c.worker.create(command_worker("retrying", "false", retry_policy=policy, **STORE_ALL))).id
            job_id = (await c.job.enqueue(svc.JobRequest(worker_id=w, args=args()))).id
            final = await listen(c, w, job_id)
            attempts = [r async for r in c.job_result.find_list_by_job_id(svc.FindListByJobIdRequest(job_id=job_id))]
            return final, sorted(attempts, key=lambda r: r.data.retried)

    final, attempts = run(scenario())
    assert final.data.status == data.ResultStatus.MAX_RETRY and final.data.retried == 3
    assert [r.data.status for r in attempts] == [data.ResultStatus.ERROR_AND_RETRY] * 3 + [data.ResultStatus.MAX_RETRY]
    # Each retry is due exactly the policy's delay after the failure before it (100, 200, then
    # capped at 250 ms) and does not start earlier.
    due_after = [b.data.run_after_time - a.data.end_time for a, b in zip(attempts, attempts[1:], strict=False)]
    assert due_after == [100, 200, 250]
    assert all(b.data.start_time >= b.data.run_after_time > a.data.end_time
               for a, b in zip(attempts, attempts[1:], strict=False))


def test_three_worker_chain_delivers_the_last_output(server: ServerProcess) -> None:
    # first prints an encoded CommandArgs(["\n\x03xyz"]) for `printf`, whose output is the
    # encoded CommandArgs(["xyz"]) for `echo`.
    async def scenario() -> data.JobResult:
        async with connect(server.port) as c:
            last = (await c.worker.create(command_worker("chain-echo", "echo", **STORE_ALL))).id
            middle = (await c.worker.create(command_worker("chain-printf", "printf", next_workers=[last]))).id
            first = (await c.worker.create(command_worker("chain-sh", "sh", next_workers=[middle]))).id
            await c.job.enqueue(svc.JobRequest(worker_id=first, args=args("-c", r"printf '\n\005\n\003xyz'")))
            while True:  # noqa: ASYNC110 - the chained job's id is not known to the client; its result is stored
                mine = [r async for r in c.job_result.find_list(svc.FindListRequest())
                        if r.data.worker_id.value == last.value]
                if mine:
                    return mine[0]
                await asyncio.sleep(0.05)

    result = run(scenario())
    assert result.data.status == data.ResultStatus.SUCCESS
    assert result.data.output.items == [b"xyz\n"]


def test_high_priority_jobs_overtake_low_ones_on_a_busy_channel(server: ServerProcess, tmp_path: Path) -> None:
    order = tmp_path / "order"

    async def scenario() -> None:
        async with connect(server.port) as c:
            w = (await c.worker.create(command_worker("prio-one", "sh", channel="one", **STORE_ALL))).id
            marker, gate = tmp_path / "busy", tmp_path / "gate"
            # The channel's one slot stays busy until every job below is queued, however slow the machine.
            await c.job.enqueue(svc.JobRequest(worker_id=w, args=args(
                "-c", f"touch {marker}; while [ ! -e {gate} ]; do sleep 0.02; done")))
            while not marker.exists():  # noqa: ASYNC110 - the job's side effect is the only signal
                await asyncio.sleep(0.02)
            ids = []
            for i in range(20):
                ids.append((await c.job.enqueue(svc.JobRequest(
                    worker_id=w, args=args("-c", f"echo low{i} >> {order}"), priority=data.Priority.LOW))).id)
            for i in range(3):
                ids.append((await c.job.enqueue(svc.JobRequest(
                    worker_id=w, args=args("-c", f"echo high{i} >> {order}"), priority=data.Priority.HIGH))).id)
            gate.touch()
            await asyncio.gather(*(listen(c, w, job_id) for job_id in ids))

    run(scenario())
    assert order.read_text().split() == [f"high{i}" for i in range(3)] + [f"low{i}" for i in range(20)]


def test_job_claimed_by_a_killed_server_runs_again_after_restart(tmp_path: Path) -> None:
    """Standalone only (its own server, not the parametrised fixture): the restart releases every
    claim found in the same SQLite file at once (lifecycle/recovery.py). In Scalable a claimed row
    waits out its lease instead; killed Scalable processes are tested in tests/scalable and tests/chaos."""
    runs = tmp_path / "runs"
    server = ServerProcess(tmp_path, {"JOB_QUEUE_FETCH_INTERVAL": "500"}).start()

    async def first_life() -> tuple[data.WorkerId, data.JobId]:
        async with connect(server.port) as c:
            w = (await c.worker.create(command_worker("survivor", "sh", **STORE_ALL))).id
            job_id = (await c.job.enqueue(svc.JobRequest(
                worker_id=w, args=args("-c", f"echo run >> {runs}; sleep 2"), run_after_time=now_ms() + 1500))).id
            while not runs.exists():  # noqa: ASYNC110 - wait until the job is claimed and running
                await asyncio.sleep(0.02)
            return w, job_id

    worker_id, job_id = run(first_life())
    server.proc.kill()
    server.proc.wait()
    server.stop()
    restarted = ServerProcess(tmp_path, {"JOB_QUEUE_FETCH_INTERVAL": "500"}).start()

    async def second_life() -> data.JobResult:
        async with connect(restarted.port) as c:
            return await listen(c, worker_id, job_id)

    try:
        result = run(second_life())
    finally:
        assert restarted.stop() == 0, restarted.log()
    assert result.data.status == data.ResultStatus.SUCCESS
    assert runs.read_text().split() == ["run", "run"]
