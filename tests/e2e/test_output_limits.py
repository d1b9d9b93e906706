"""A client must not exhaust the host through outputs, against a real server in both storage modes:
JOB_OUTPUT_MAX_BYTES reaches the runner hosts and fails a job whose output passes it (naming the
setting), and a ListenStreamByWorker subscriber that stops reading is cut off past
LISTEN_STREAM_MAX_BUFFERED with RESOURCE_EXHAUSTED instead of buffering without bound."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, ServerProcess, connect, run
from tests.chaos.raw_grpc import PassThroughCodec
from tests.e2e.servers import STORAGE_MODES, server_in_mode

pytestmark = pytest.mark.timeout(300)
OUTPUT_LIMIT = 256 * 1024
STREAMED_OUTPUT = 100_000  # more than the slow subscriber's 64 KiB HTTP/2 window
JOBS_WHILE_STALLED = 8  # far more than its window (one result), its server-side buffer (2) and one in flight
COMMAND = data.RunnerId(value=1)
HANG_S = 120  # hang guard only


@pytest.fixture(scope="module", params=STORAGE_MODES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"JOB_OUTPUT_MAX_BYTES": str(OUTPUT_LIMIT), "LISTEN_STREAM_MAX_BUFFERED": "2",
           "WORKER_DEFAULT_CONCURRENCY": "2"}
    with server_in_mode(request.param, tmp_path_factory.mktemp(f"limits-{request.param}"), env) as proc:
        yield proc


def head_worker(name: str, response_type: data.ResponseType) -> data.WorkerData:
    return data.WorkerData(name=name, runner_id=COMMAND, response_type=response_type,
                           runner_settings=bytes(runner_pb.CommandRunnerSettings(name="head")),
                           store_success=True, store_failure=True)


def head_bytes(n: int) -> bytes:
    return bytes(runner_pb.CommandArgs(args=["-c", str(n), "/dev/zero"]))


def test_output_over_the_limit_fails_the_job_naming_the_setting(server: ServerProcess) -> None:
    async def scenario() -> tuple[data.JobResultData, data.JobResultData]:
        async with connect(server.port) as c:
            await c.worker.create(head_worker("head-direct", data.ResponseType.DIRECT))
            results = []
            for n in (OUTPUT_LIMIT, OUTPUT_LIMIT + 1):
                response = await c.job.enqueue(svc.JobRequest(worker_name="head-direct", args=head_bytes(n)),
                                               timeout=HANG_S)
                assert response.result is not None
                results.append(response.result.data)
            return results[0], results[1]

    fits, over = run(scenario(), timeout=HANG_S)
    assert fits.status == data.ResultStatus.SUCCESS and fits.output is not None
    assert fits.output.items == [b"\0" * OUTPUT_LIMIT]
    assert over.status == data.ResultStatus.OTHER_ERROR and over.output is not None
    [message] = over.output.items
    assert f"JOB_OUTPUT_MAX_BYTES ({OUTPUT_LIMIT} bytes)".encode() in message, message


def test_a_subscriber_that_stops_reading_is_cut_off_with_resource_exhausted(server: ServerProcess) -> None:
    """The subscriber reads one result (so it is subscribed), then reads nothing while more jobs
    finish (each waited for on another connection), then reads on: it gets at most what was in
    flight, then RESOURCE_EXHAUSTED naming the limit -- never a silent end or an endless buffer."""
    name = "head-streamed"
    request = bytes(svc.ListenStreamByWorkerRequest(worker_name=name))
    small_window = Configuration(http2_connection_window_size=65535, http2_stream_window_size=65535)

    async def enqueue_and_wait(c: Client) -> None:
        job = await c.job.enqueue(svc.JobRequest(worker_name=name, args=head_bytes(STREAMED_OUTPUT)), timeout=HANG_S)
        await c.job_result.listen(svc.ListenRequest(job_id=job.id, worker_name=name), timeout=HANG_S)

    async def scenario() -> tuple[int, GRPCError]:
        async with connect(server.port) as c:
            await c.worker.create(head_worker(name, data.ResponseType.LISTEN_AFTER))
            slow = Channel("127.0.0.1", server.port, codec=PassThroughCodec(), config=small_window)
            try:
                async with slow.request("/jobworkerp.service.JobResultService/ListenStreamByWorker",
                                        Cardinality.UNARY_STREAM, bytes, bytes) as stream:
                    await stream.send_message(request, end=True)
                    first = asyncio.ensure_future(stream.recv_message())
                    while not first.done():  # until the subscription is certainly there
                        await enqueue_and_wait(c)
                        await asyncio.wait([first], timeout=0.5)
                    assert data.JobResult.parse(first.result()).data.output.items == [b"\0" * STREAMED_OUTPUT]
                    for _ in range(JOBS_WHILE_STALLED):
                        await enqueue_and_wait(c)
                    read = 0
                    with pytest.raises(GRPCError) as info:
                        while await stream.recv_message() is not None:
                            read += 1
                        await stream.recv_trailing_metadata()  # the status is raised here
                    return read, info.value
            finally:
                slow.close()

    read, error = run(scenario(), timeout=HANG_S * 2)
    assert error.status == Status.RESOURCE_EXHAUSTED, error
    assert "LISTEN_STREAM_MAX_BUFFERED=2" in (error.message or ""), error.message
    assert read < JOBS_WHILE_STALLED
