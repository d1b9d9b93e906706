"""Each `jobworkerp.client.Client` method, and each typed error, against a real server in both
storage modes (Standalone and Scalable)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from jobworkerp.client import (
    AlreadyExists,
    Client,
    DeadlineExceeded,
    InvalidArgument,
    JobFailed,
    JobHandle,
    NoResult,
    RetryPolicy,
    RunnerNotFound,
    Unavailable,
    WorkerNotFound,
)
from jobworkerp.testing.server import ServerProcess, free_port, run
from tests.client.conftest import functions_env
from tests.e2e.servers import STORAGE_MODES, server_in_mode

pytestmark = pytest.mark.timeout(180)
WAIT_S = 60.0  # generous bound for a condition to hold; never an assertion on speed


@pytest.fixture(scope="module", params=STORAGE_MODES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with server_in_mode(request.param, tmp_path_factory.mktemp(f"client-{request.param}"), functions_env()) as proc:
        yield proc


def test_runners_by_name_and_id(address: str) -> None:
    async def scenario() -> None:
        async with Client(address) as client:
            names = {r.name for r in await client.runners()}
            assert {"COMMAND", "HTTP_REQUEST", "grow", "add", "host-pid"} <= names
            command = await client.runner("COMMAND")
            assert command.type == "COMMAND" and "CommandArgs" in command.args_proto
            assert (await client.runner(command.id)) == command
            grow = await client.runner("grow")
            assert grow.type == "PLUGIN" and "message GrowArgs" in grow.args_proto
            assert "message Box" in (grow.result_proto or "")
            with pytest.raises(RunnerNotFound, match="no runner named 'NOPE'"):
                await client.runner("NOPE")

    run(scenario())


def test_worker_create_get_update_delete(address: str) -> None:
    async def scenario() -> None:
        async with Client(address) as client:
            created = await client.create_worker("crud-echo", "COMMAND", {"name": "echo"}, channel=None,
                                                 retry=RetryPolicy("CONSTANT", interval_ms=10, max_retry=2))
            assert created.name == "crud-echo" and created.runner.name == "COMMAND"
            assert created.settings == {"name": "echo"} and created.response_type == "DIRECT"
            assert created.retry is not None and created.retry.type == "CONSTANT" and created.retry.max_retry == 2
            assert await client.get_worker("crud-echo") == await client.get_worker(created.id) == created

            updated = await client.update_worker("crud-echo", settings={"name": "printf"},
                                                 response_type="LISTEN_AFTER", store_success=True, store_failure=True)
            assert updated.id == created.id and updated.settings == {"name": "printf"}
            assert updated.response_type == "LISTEN_AFTER" and updated.retry == created.retry  # the rest kept

            assert await client.delete_worker(updated) is True
            assert await client.delete_worker("crud-echo") is False
            with pytest.raises(WorkerNotFound):
                await client.get_worker(created.id)

    run(scenario())


def test_run_direct_returns_the_decoded_output(address: str) -> None:
    async def scenario() -> None:
        async with Client(address) as client:
            await client.create_worker("run-echo", "COMMAND", {"name": "echo"})
            assert await client.run("run-echo", {"args": ["hello", "world"]}) == [b"hello world\n"]
            # bytes already encoded pass through (a betterproto2 message is encoded too)
            from jobworkerp.proto.jobworkerp import runner

            assert await client.run("run-echo", runner.CommandArgs(args=["raw"])) == [b"raw\n"]
            handle = await client.enqueue("run-echo", {"args": ["direct"]})  # DIRECT: answered in the reply
            assert (await handle.result()).output == [b"direct\n"]

    run(scenario())


def test_enqueue_result_status_and_listen_after(address: str) -> None:
    async def scenario() -> None:
        async with Client(address) as client:
            worker = await client.create_worker("later-echo", "COMMAND", {"name": "echo"}, response_type="LISTEN_AFTER")
            assert worker.store_success and worker.store_failure  # LISTEN_AFTER needs both: defaulted
            handle = await client.enqueue(worker, {"args": ["queued"]}, priority="high", uniq_key="later-1",
                                          job_timeout=WAIT_S)
            assert isinstance(handle, JobHandle) and handle.job_id > 0
            result = await handle.result(timeout=WAIT_S)
            assert result.ok and result.status == "SUCCESS" and result.output == [b"queued\n"]
            assert result.job_id == handle.job_id and result.worker == "later-echo"
            assert await handle.status() is None  # ended: no status left
            # run() on a LISTEN_AFTER worker enqueues, then listens
            assert await client.run(worker, {"args": ["listened"]}, timeout=WAIT_S) == [b"listened\n"]

    run(scenario())


def test_status_and_cancel_of_a_scheduled_job(address: str) -> None:
    async def scenario() -> None:
        async with Client(address) as client:
            await client.create_worker("cancel-echo", "COMMAND", {"name": "echo"}, response_type="LISTEN_AFTER")
            handle = await client.enqueue("cancel-echo", {"args": ["never"]}, run_after=timedelta(hours=1))
            assert await handle.status() == "PENDING"
            assert await handle.cancel() is True
            result = await handle.result(timeout=WAIT_S)
            assert result.status == "CANCELLED"
            with pytest.raises(JobFailed) as failed:
                result.raise_for_status()
            assert failed.value.status == "CANCELLED"
            assert await handle.status() is None
            assert await handle.cancel() is False

    run(scenario())


def test_results_stream_of_a_worker(address: str) -> None:
    async def scenario() -> None:
        async with Client(address) as client:
            await client.create_worker("stream-echo", "COMMAND", {"name": "echo"}, response_type="NO_RESULT")
            received: list[bytes] = []

            async def listen() -> None:
                async for result in client.results("stream-echo"):
                    assert result.status == "SUCCESS" and result.worker == "stream-echo"
                    received.append(result.output[0])
                    return

            listener = asyncio.create_task(listen())
            # The stream sees jobs that end after the server has the subscription, which the client
            # cannot observe: keep enqueuing until one arrives.
            while not listener.done():
                await client.enqueue("stream-echo", {"args": ["streamed"]})
                await asyncio.wait([listener], timeout=0.2)
            await listener
            assert received == [b"streamed\n"]

            with pytest.raises(NoResult):  # nothing to wait on for NO_RESULT
                await client.run("stream-echo", {"args": ["x"]})
            handle = await client.enqueue("stream-echo", {"args": ["x"]})
            with pytest.raises(NoResult):
                await handle.result()
            await client.create_worker("stream-direct", "COMMAND", {"name": "echo"})
            with pytest.raises(NoResult):  # DIRECT results go only to their callers
                async for _ in client.results("stream-direct"):
                    pass

    run(scenario(), timeout=120)


def test_enqueue_many(address: str) -> None:
    async def scenario() -> None:
        async with Client(address) as client:
            await client.create_worker("bulk-echo", "COMMAND", {"name": "echo"}, response_type="LISTEN_AFTER")
            answers = await client.enqueue_many("bulk-echo", [{"args": ["one"]}, {"wrong": 1}, {"args": ["two"]}])
            assert isinstance(answers[1], InvalidArgument) and 'unknown field "wrong"' in str(answers[1])
            handles = [a for a in answers if isinstance(a, JobHandle)]
            assert [(await h.result(timeout=WAIT_S)).output for h in handles] == [[b"one\n"], [b"two\n"]]
            await client.create_worker("bulk-direct", "COMMAND", {"name": "echo"})
            refused = await client.enqueue_many("bulk-direct", [{"args": ["x"]}])
            assert isinstance(refused[0], InvalidArgument) and "DIRECT" in str(refused[0])

    run(scenario())


def test_typed_errors(address: str) -> None:
    async def scenario() -> None:
        async with Client(address) as client:
            with pytest.raises(WorkerNotFound, match="'no-such-worker' does not exist"):
                await client.run("no-such-worker", {"args": []})
            with pytest.raises(WorkerNotFound):
                await client.enqueue(987654321, {"args": []})

            await client.create_worker("err-false", "COMMAND", {"name": "false"})
            with pytest.raises(AlreadyExists) as taken:
                await client.create_worker("err-false", "COMMAND", {"name": "false"})
            assert taken.value.code == "ALREADY_EXISTS"

            with pytest.raises(JobFailed) as failed:
                await client.run("err-false", {"args": []})
            assert failed.value.status in ("ERROR_AND_RETRY", "MAX_RETRY")  # a non-zero exit is retryable
            assert "exit code 1" in failed.value.output[0] and failed.value.job_id > 0

            with pytest.raises(InvalidArgument, match='unknown field "argz"'):
                await client.run("err-false", {"argz": []})
            with pytest.raises(InvalidArgument, match="give a dict"):
                await client.run("err-false", "a string for a runner with an args message")

            await client.create_worker("err-held", "COMMAND", {"name": "echo"}, response_type="LISTEN_AFTER")
            held = await client.enqueue("err-held", {"args": []}, uniq_key="held", run_after=timedelta(hours=1))
            with pytest.raises(AlreadyExists, match="uniq_key"):
                await client.enqueue("err-held", {"args": []}, uniq_key="held")
            await held.cancel()

            await client.create_worker("err-sleep", "COMMAND", {"name": "sleep"})
            with pytest.raises(DeadlineExceeded):  # the DIRECT job is deleted by the server then
                await client.run("err-sleep", {"args": ["600"]}, timeout=0.5)

    run(scenario())


def test_unavailable_when_no_server_answers() -> None:
    async def scenario() -> None:
        async with Client(f"127.0.0.1:{free_port()}", retries=1) as client:
            with pytest.raises(Unavailable, match="not reachable"):
                await client.runners()  # a read: tried twice, then Unavailable
            with pytest.raises(Unavailable):
                await client.create_worker("x")  # a write: not repeated

    run(scenario())


def test_unavailable_while_the_server_is_down_and_reads_retried_until_it_is_back(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path).start()
    port = proc.port

    async def scenario() -> None:
        async with Client(f"127.0.0.1:{port}", retries=0) as once, \
                Client(f"127.0.0.1:{port}", retries=60) as patient:
            await once.create_worker("survivor", "COMMAND", {"name": "echo"})
            assert proc.stop() == 0
            with pytest.raises(Unavailable):
                await once.get_worker("survivor")
            read = asyncio.create_task(patient.get_worker("survivor"))  # retried while the server is down
            again = ServerProcess(tmp_path, {"GRPC_ADDR": f"127.0.0.1:{port}"})
            again.port = port
            await asyncio.to_thread(again.start)  # same SQLite file, same port
            try:
                assert (await read).name == "survivor"
                assert (await once.get_worker("survivor")).name == "survivor"  # the connection is made again
            finally:
                assert again.stop() == 0

    run(scenario(), timeout=180)
