"""Bad input gets a precise gRPC status whose message names the field — never INTERNAL or a hang."""

from __future__ import annotations

import pytest
from grpclib.const import Status

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, run
from tests.e2e.refusals import status_of

pytestmark = pytest.mark.timeout(60)

SETTINGS = bytes(runner_pb.CommandRunnerSettings(name="echo"))


def worker(name: str = "w", **kwargs) -> data.WorkerData:
    fields = {"runner_id": data.RunnerId(value=1), "runner_settings": SETTINGS, **kwargs}
    return data.WorkerData(name=name, **fields)




@pytest.mark.parametrize(
    ("wd", "field"),
    [
        (worker(name=""), "name"),
        (worker(runner_id=None), "runner_id"),
        (worker(runner_id=data.RunnerId(value=999)), "runner_id"),
        (worker(runner_settings=b"\xff\xff\xff"), "runner_settings"),
        (worker(periodic_interval=5000, response_type=data.ResponseType.DIRECT), "periodic_interval"),
        (worker(periodic_interval=1000), "periodic_interval"),
        (worker(queue_type=data.QueueType.FORCED_RDB, response_type=data.ResponseType.DIRECT), "queue_type"),
        (worker(response_type=data.ResponseType.LISTEN_AFTER), "store_success"),
        (worker(retry_policy=data.RetryPolicy(type=data.RetryType.CONSTANT, interval=10, basis=0.5)),
         "retry_policy.basis"),
    ],
)
def test_invalid_worker_definitions_are_rejected(server: ServerProcess, wd: data.WorkerData, field: str) -> None:
    status, message = status_of(server.port, lambda c: c.worker.create(wd))
    assert status == Status.INVALID_ARGUMENT
    assert message.startswith(field), message


# Standalone only: in Scalable, worker processes other than this one may serve the channel (README).
@pytest.mark.parametrize("server", ["standalone"], indirect=True)
def test_worker_on_a_channel_nobody_serves_is_rejected(server: ServerProcess) -> None:
    status, message = status_of(server.port, lambda c: c.worker.create(worker(channel="nobody-serves-this")))
    assert status == Status.INVALID_ARGUMENT
    assert message.startswith("channel"), message


def test_duplicate_worker_name_is_already_exists(server: ServerProcess) -> None:
    async def twice(c) -> None:
        await c.worker.create(worker("dup"))
        await c.worker.create(worker("dup"))

    status, message = status_of(server.port, twice)
    assert status == Status.ALREADY_EXISTS
    assert "dup" in message


def test_update_of_unknown_worker_is_not_found(server: ServerProcess) -> None:
    status, _ = status_of(server.port, lambda c: c.worker.update(
        data.Worker(id=data.WorkerId(value=987654), data=worker("ghost"))))
    assert status == Status.NOT_FOUND


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (svc.JobRequest(args=b""), "worker"),
        (svc.JobRequest(worker_name=""), "worker_name"),
        (svc.JobRequest(worker_name="no-such-worker"), "worker_name"),
        (svc.JobRequest(worker_id=data.WorkerId(value=987654)), "worker_id"),
    ],
)
def test_enqueue_to_missing_worker_is_invalid_argument(server: ServerProcess, request_: svc.JobRequest,
                                                        field: str) -> None:
    status, message = status_of(server.port, lambda c: c.job.enqueue(request_))
    assert status == Status.INVALID_ARGUMENT
    assert message.startswith(field), message


def test_enqueue_with_negative_run_after_time_is_invalid(server: ServerProcess) -> None:
    async def scenario(c) -> None:
        await c.worker.create(worker("neg-time"))
        await c.job.enqueue(svc.JobRequest(worker_name="neg-time", run_after_time=-1))

    status, message = status_of(server.port, scenario)
    assert status == Status.INVALID_ARGUMENT and message.startswith("run_after_time")


def test_listen_on_direct_worker_and_without_job_id_are_invalid(server: ServerProcess) -> None:
    async def direct(c) -> None:
        await c.worker.create(worker("direct-listen", response_type=data.ResponseType.DIRECT))
        await c.job_result.listen(svc.ListenRequest(job_id=data.JobId(value=1), worker_name="direct-listen"))

    status, _ = status_of(server.port, direct)
    assert status == Status.INVALID_ARGUMENT
    status, message = status_of(server.port, lambda c: c.job_result.listen(svc.ListenRequest(worker_name="x")))
    assert status == Status.INVALID_ARGUMENT and message.startswith("job_id")


def test_listen_times_out_with_deadline_exceeded(server: ServerProcess) -> None:
    async def scenario(c) -> None:
        await c.worker.create(worker("quiet", store_success=True, store_failure=True))
        await c.job_result.listen(svc.ListenRequest(job_id=data.JobId(value=12345), worker_name="quiet", timeout=200))

    status, _ = status_of(server.port, scenario)
    assert status == Status.DEADLINE_EXCEEDED


def test_builtin_runner_cannot_be_deleted(server: ServerProcess) -> None:
    status, message = status_of(server.port, lambda c: c.runner.delete(data.RunnerId(value=1)))
    assert status == Status.INVALID_ARGUMENT and message.startswith("id")


def test_lookups_of_unknown_ids_answer_absent(server: ServerProcess) -> None:
    async def scenario():
        async with connect(server.port) as c:
            return (
                await c.worker.find(data.WorkerId(value=424242)),
                await c.job.find(data.JobId(value=424242)),
                await c.job_result.find(data.JobResultId(value=424242)),
                await c.job_status.find(data.JobId(value=424242)),
                await c.job.delete(data.JobId(value=424242)),
            )

    worker_r, job_r, result_r, status_r, deleted = run(scenario())
    assert worker_r.data is None and job_r.data is None and result_r.data is None and status_r.status is None
    assert deleted.is_success is False
