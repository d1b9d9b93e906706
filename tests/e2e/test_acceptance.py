"""The issue's acceptance scenarios, driven over real gRPC against a real server process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, ServerProcess, connect, run

pytestmark = pytest.mark.timeout(120)

COMMAND = data.RunnerId(value=1)


def command_worker(name: str, command: str, **kwargs) -> data.WorkerData:
    return data.WorkerData(
        name=name,
        runner_id=COMMAND,
        runner_settings=bytes(runner_pb.CommandRunnerSettings(name=command)),
        **kwargs,
    )


def args(*argv: str) -> bytes:
    return bytes(runner_pb.CommandArgs(args=list(argv)))


async def create(c: Client, wd: data.WorkerData) -> data.WorkerId:
    return (await c.worker.create(wd)).id


def test_runners_are_listed_with_command_as_id_1(server: ServerProcess) -> None:
    async def scenario() -> list[data.Runner]:
        async with connect(server.port) as c:
            return [r async for r in c.runner.find_list(svc.FindListRequest())]

    runners = {r.id.value: r for r in run(scenario())}
    assert runners[1].data.name == "COMMAND"
    assert runners[1].data.runner_type == data.RunnerType.COMMAND
    assert "CommandRunnerSettings" in runners[1].data.runner_settings_proto
    assert {2: "HTTP_REQUEST", 3: "GRPC_UNARY", 4: "DOCKER"} == {i: runners[i].data.name for i in (2, 3, 4)}


def test_direct_echo_returns_stdout_in_the_enqueue_call(server: ServerProcess) -> None:
    async def scenario() -> svc.CreateJobResponse:
        async with connect(server.port) as c:
            await create(c, command_worker("echo", "echo", response_type=data.ResponseType.DIRECT))
            return await c.job.enqueue(svc.JobRequest(worker_name="echo", args=args("hello", "world")))

    response = run(scenario())
    assert response.result is not None
    assert response.result.data.status == data.ResultStatus.SUCCESS
    assert response.result.data.output.items == [b"hello world\n"]
    assert response.result.data.job_id.value == response.id.value
    assert response.result.data.worker_name == "echo"


def test_listen_after_result_reaches_two_concurrent_listeners(server: ServerProcess) -> None:
    async def scenario() -> tuple[int, list[data.JobResult]]:
        async with connect(server.port) as c:
            worker_id = await create(c, command_worker(
                "sleep", "sleep", response_type=data.ResponseType.LISTEN_AFTER, store_success=True,
                store_failure=True))
            job_id = (await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=args("1")))).id
            listen = svc.ListenRequest(job_id=job_id, worker_id=worker_id, timeout=30_000)
            results = await asyncio.gather(c.job_result.listen(listen), c.job_result.listen(listen))
            return job_id.value, list(results)

    job_id, results = run(scenario())
    for result in results:
        assert result.data.job_id.value == job_id
        assert result.data.status == data.ResultStatus.SUCCESS
    assert results[0].id.value == results[1].id.value


def test_no_result_worker_with_store_success_result_found_by_job_id(server: ServerProcess) -> None:
    async def scenario() -> tuple[int, svc.CreateJobResponse, list[data.JobResult], svc.OptionalJobResultResponse]:
        async with connect(server.port) as c:
            worker_id = await create(c, command_worker("stored-echo", "echo", store_success=True))
            response = await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=args("stored")))
            listened = await c.job_result.listen(svc.ListenRequest(job_id=response.id, worker_id=worker_id,
                                                                   timeout=30_000))
            by_job = [r async for r in c.job_result.find_list_by_job_id(svc.FindListByJobIdRequest(job_id=response.id))]
            found = await c.job_result.find(listened.id)
            return response.id.value, response, by_job, found

    job_id, response, by_job, found = run(scenario())
    assert response.result is None  # NO_RESULT: only the id comes back
    assert len(by_job) == 1
    assert by_job[0].data.job_id.value == job_id
    assert by_job[0].data.output.items == [b"stored\n"]
    assert by_job[0].data.worker_name == "stored-echo"
    assert found.data is not None and found.data.id.value == by_job[0].id.value


def _peak_in_flight(log: str) -> int:
    peak = current = 0
    for line in log.split():
        current += 1 if line == "start" else -1
        peak = max(peak, current)
    return peak


# Each job logs start, waits until `barrier` jobs have started (or ~10 s pass), then logs end.
BARRIER_SCRIPT = (
    'echo start >> "$0"; i=0; '
    'while [ "$(grep -c start "$0")" -lt "$1" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; '
    'sleep "$2"; echo end >> "$0"'
)


async def _run_batch(c: Client, worker_id: data.WorkerId, n: int, argv: list[str]) -> list[data.JobResult]:
    """Enqueue n jobs, then Listen for each (stored results make a late Listen safe)."""
    job_ids = [(await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=args(*argv)))).id for _ in range(n)]
    return list(await asyncio.gather(*(
        c.job_result.listen(svc.ListenRequest(job_id=job_id, worker_id=worker_id, timeout=60_000))
        for job_id in job_ids
    )))


def test_channel_concurrency_limits_jobs_in_flight(server: ServerProcess) -> None:
    single_log = server.workdir / "single.log"
    default_log = server.workdir / "default.log"

    async def scenario() -> tuple[list[data.JobResult], list[data.JobResult]]:
        async with connect(server.port) as c:
            stored = {"store_success": True, "store_failure": True}
            single = await create(c, command_worker("barrier-single", "sh", channel="single", **stored))
            default = await create(c, command_worker("barrier-default", "sh", **stored))
            return await asyncio.gather(
                _run_batch(c, single, 3, ["-c", BARRIER_SCRIPT, str(single_log), "1", "0.2"]),
                _run_batch(c, default, 8, ["-c", BARRIER_SCRIPT, str(default_log), "4", "0"]),
            )

    single_results, default_results = run(scenario(), timeout=100)
    assert all(r.data.status == data.ResultStatus.SUCCESS for r in single_results + default_results)
    assert _peak_in_flight(single_log.read_text()) == 1
    assert _peak_in_flight(default_log.read_text()) == 4


@pytest.mark.parametrize("signal_name", ["SEGV", "KILL"])
def test_runner_host_crash_fails_only_that_job(server: ServerProcess, signal_name: str) -> None:
    async def scenario() -> tuple[svc.CreateJobResponse, svc.CreateJobResponse]:
        async with connect(server.port) as c:
            worker_id = await create(c, command_worker(f"crasher-{signal_name}", "sh",
                                                       response_type=data.ResponseType.DIRECT))
            # The command's parent is the runner host: signal it mid-job.
            crashed = await c.job.enqueue(svc.JobRequest(
                worker_id=worker_id, args=args("-c", f"kill -{signal_name} $PPID; sleep 5")))
            after = await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=args("-c", "echo fine")))
            return crashed, after

    crashed, after = run(scenario())
    assert crashed.result.data.status in (data.ResultStatus.ERROR_AND_RETRY, data.ResultStatus.MAX_RETRY)
    message = crashed.result.data.output.items[0].decode()
    assert "runner host" in message and f"SIG{signal_name}" in message
    assert after.result.data.status == data.ResultStatus.SUCCESS
    assert after.result.data.output.items == [b"fine\n"]
    assert server.alive()


def test_non_zero_exit_is_a_failure_with_stderr(server: ServerProcess) -> None:
    async def scenario() -> svc.CreateJobResponse:
        async with connect(server.port) as c:
            worker_id = await create(c, command_worker("failing", "sh", response_type=data.ResponseType.DIRECT))
            return await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=args("-c", "echo oops >&2; exit 3")))

    result = run(scenario()).result.data
    assert result.status == data.ResultStatus.MAX_RETRY  # retryable failure, no retry policy
    assert "exit code 3" in result.output.items[0].decode()
    assert "oops" in result.output.items[0].decode()


def test_job_timeout_kills_the_command(server: ServerProcess) -> None:
    # The command would sleep 10 minutes: an answer within run()'s 60 s guard means it was killed.
    async def scenario() -> svc.CreateJobResponse:
        async with connect(server.port) as c:
            worker_id = await create(c, command_worker("slow", "sleep", response_type=data.ResponseType.DIRECT))
            return await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=args("600"), timeout=300))

    response = run(scenario())
    assert response.result.data.status == data.ResultStatus.MAX_RETRY
    assert "timed out after 300 ms" in response.result.data.output.items[0].decode()


def test_job_status_is_pending_or_running_then_gone(server: ServerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"  # the job runs until the test opens the gate, however slow the machine

    async def scenario() -> tuple[svc.OptionalJobStatusResponse, svc.OptionalJobStatusResponse]:
        async with connect(server.port) as c:
            worker_id = await create(c, command_worker(
                "status-gate", "sh", response_type=data.ResponseType.LISTEN_AFTER, store_success=True,
                store_failure=True))
            job_id = (await c.job.enqueue(svc.JobRequest(
                worker_id=worker_id, args=args("-c", f"while [ ! -e {gate} ]; do sleep 0.02; done")))).id
            during = await c.job_status.find(job_id)
            gate.touch()
            await c.job_result.listen(svc.ListenRequest(job_id=job_id, worker_id=worker_id, timeout=30_000))
            after = await c.job_status.find(job_id)
            return during, after

    during, after = run(scenario())
    assert during.status in (data.JobStatus.PENDING, data.JobStatus.RUNNING)
    assert after.status is None


def test_uniq_key_refuses_a_second_job_until_the_first_has_ended(server: ServerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"  # the first job holds its key until the test opens the gate, however slow the machine

    async def scenario() -> tuple[int, GRPCError, data.JobResult, data.JobResult, list[list[bytes]]]:
        async with connect(server.port) as c:
            worker_id = await create(c, command_worker(
                "uniq", "sh", response_type=data.ResponseType.LISTEN_AFTER, store_success=True, store_failure=True))

            async def enqueue(script: str) -> data.JobId:
                request = svc.JobRequest(worker_id=worker_id, uniq_key="nightly-report", args=args("-c", script))
                return (await c.job.enqueue(request)).id

            async def listen(job_id: data.JobId) -> data.JobResult:
                return await c.job_result.listen(svc.ListenRequest(job_id=job_id, worker_id=worker_id, timeout=30_000))

            try:
                first = await enqueue(f"while [ ! -e {gate} ]; do sleep 0.02; done; echo first")
                try:
                    await enqueue("echo second")
                except GRPCError as e:
                    refused = e
                else:
                    raise AssertionError("a second job with a held uniq_key was accepted")
            finally:
                gate.touch()
            first_result = await listen(first)
            again_result = await listen(await enqueue("echo again"))  # the key is free once the job has ended
            outputs = [list(r.data.output.items) async for r in c.job_result.find_list(svc.FindListRequest())
                       if r.data.worker_id.value == worker_id.value]
            return first.value, refused, first_result, again_result, outputs

    first, refused, first_result, again_result, outputs = run(scenario())
    assert refused.status == Status.ALREADY_EXISTS
    assert "nightly-report" in (refused.message or "") and str(first) in (refused.message or "")
    assert first_result.data.status == data.ResultStatus.SUCCESS and first_result.data.output.items == [b"first\n"]
    assert again_result.data.status == data.ResultStatus.SUCCESS and again_result.data.output.items == [b"again\n"]
    assert again_result.data.uniq_key == "nightly-report"
    assert sorted(outputs) == [[b"again\n"], [b"first\n"]]  # the refused job never ran


def test_delete_cancels_a_running_job(server: ServerProcess) -> None:
    async def scenario() -> tuple[bool, data.JobResult]:
        async with connect(server.port) as c:
            worker_id = await create(c, command_worker(
                "deletable", "sleep", response_type=data.ResponseType.LISTEN_AFTER, store_success=True,
                store_failure=True))
            job_id = (await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=args("30")))).id
            listen = asyncio.ensure_future(c.job_result.listen(
                svc.ListenRequest(job_id=job_id, worker_id=worker_id, timeout=30_000)))
            # The API has no "job started" event to await; poll the status as a client would.
            while (await c.job_status.find(job_id)).status != data.JobStatus.RUNNING:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            deleted = (await c.job.delete(job_id)).is_success
            return deleted, await listen

    deleted, result = run(scenario())
    assert deleted
    assert result.data.status == data.ResultStatus.CANCELLED


def test_deleting_a_queued_direct_job_answers_its_caller_with_cancelled(server: ServerProcess) -> None:
    async def scenario() -> svc.CreateJobResponse:
        async with connect(server.port) as c:
            blocker = await create(c, command_worker("single-blocker", "sleep", channel="single"))
            direct = await create(c, command_worker("single-direct", "echo", channel="single",
                                                    response_type=data.ResponseType.DIRECT))
            blocker_job = (await c.job.enqueue(svc.JobRequest(worker_id=blocker, args=args("30")))).id
            known = {s.id.value async for s in c.job_status.find_all(data.Empty())}
            waiting = asyncio.ensure_future(c.job.enqueue(svc.JobRequest(worker_id=direct, args=args("never"))))
            pending: list[int] = []
            while not pending:  # noqa: ASYNC110 - find the DIRECT job's id as a client would
                pending = [s.id.value async for s in c.job_status.find_all(data.Empty())
                           if s.status == data.JobStatus.PENDING and s.id.value not in known]
                await asyncio.sleep(0.02)
            assert (await c.job.delete(data.JobId(value=pending[0]))).is_success
            response = await waiting
            await c.job.delete(blocker_job)
            return response

    response = run(scenario())
    assert response.result.data.status == data.ResultStatus.CANCELLED
    assert b"deleted before it ran" in response.result.data.output.items[0]
