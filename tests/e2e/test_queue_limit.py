"""JOB_QUEUE_MAX_LENGTH: a full channel refuses new jobs with RESOURCE_EXHAUSTED, and takes them
again once it has room (issue 10, overload)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, run

pytestmark = pytest.mark.timeout(120)

LIMIT = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("server"),
        {"WORKER_CHANNELS": "narrow", "WORKER_CHANNEL_CONCURRENCIES": "1", "JOB_QUEUE_MAX_LENGTH": str(LIMIT)},
    ).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def test_a_full_channel_refuses_jobs_until_it_has_room(server: ServerProcess) -> None:
    sleeper = data.WorkerData(name="sleeper", runner_id=data.RunnerId(value=1), channel="narrow",
                              runner_settings=bytes(runner_pb.CommandRunnerSettings(name="sleep")))
    job = svc.JobRequest(worker_name="sleeper", args=bytes(runner_pb.CommandArgs(args=["60"])))

    async def scenario() -> tuple[list[int], GRPCError, int]:
        async with connect(server.port) as c:
            await c.worker.create(sleeper)
            accepted: list[int] = []
            refusal: GRPCError | None = None
            while refusal is None:
                try:
                    accepted.append((await c.job.enqueue(job)).id.value)
                except GRPCError as e:
                    refusal = e
                assert len(accepted) <= LIMIT + 1, "the queue grew past its limit"
            # Room again once a queued job leaves: the next enqueue is taken (the limit reads
            # the queue's length anew every 100 ms, so a refusal may repeat for that long).
            await c.job.delete(data.JobId(value=accepted[-1]))
            while True:
                try:
                    again = (await c.job.enqueue(job)).id.value
                    break
                except GRPCError as e:
                    assert e.status == Status.RESOURCE_EXHAUSTED
                    await asyncio.sleep(0.05)
            for job_id in [*accepted, again]:
                await c.job.delete(data.JobId(value=job_id))
            return accepted, refusal, again

    accepted, refusal, again = run(scenario())
    # LIMIT queued, plus the one the channel's single slot may already have taken out to run.
    assert LIMIT <= len(accepted) <= LIMIT + 1
    assert refusal.status == Status.RESOURCE_EXHAUSTED
    assert "JOB_QUEUE_MAX_LENGTH=3" in (refusal.message or "") and "'narrow'" in (refusal.message or "")
    assert again not in accepted
