"""Streamed output (JobStreamService) against a real server in both storage modes: a job's
output arrives while it runs, chunk by chunk and in order, then its result; a late listener gets
what was kept; a job not enqueued for streaming sends no chunks. No test here measures time:
liveness is shown by jobs that can only end once the client has seen their first chunk."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobworkerp.proto.jobworkerp import data, ext
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.runners.plugins import proto_messages
from jobworkerp.testing.server import Client, ServerProcess, connect, run
from plugins import hello
from tests.e2e.servers import STORAGE_MODES, server_in_mode
from tests.e2e.streamed import HANG_S, collect, command_worker, gated, open_gate_on_first_data, plain, sh

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]
STORE_ALL = {"store_success": True, "store_failure": True}
ACCEPTANCE = "echo one; sleep 0.3; echo two; sleep 0.3; echo three"


@pytest.fixture(scope="module", params=STORAGE_MODES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"PLUGINS_RUNNER_DIR": str(ROOT / "plugins")}
    with server_in_mode(request.param, tmp_path_factory.mktemp(f"stream-{request.param}"), env) as proc:
        yield proc


def streams(c: Client) -> ext.JobStreamServiceStub:
    return ext.JobStreamServiceStub(c.channel, timeout=HANG_S)


def ended(items: list[tuple[str, object]]) -> data.JobResultData:
    kind, result = items[-1]
    assert kind == "end" and isinstance(result, data.JobResult), items
    return result.data


@pytest.mark.parametrize("response_type", [data.ResponseType.DIRECT, data.ResponseType.NO_RESULT,
                                           data.ResponseType.LISTEN_AFTER])
def test_three_lines_300_ms_apart_arrive_as_three_chunks_in_order_before_the_result(
        server: ServerProcess, response_type: data.ResponseType) -> None:
    name = f"three-lines-{response_type.name.lower()}"

    async def scenario() -> list[tuple[str, object]]:
        async with connect(server.port) as c:
            await c.worker.create(command_worker(name, response_type=response_type, **STORE_ALL))
            request = svc.JobRequest(worker_name=name, args=sh(ACCEPTANCE))
            return await collect(streams(c).enqueue_for_stream(request))

    items = run(scenario(), HANG_S)
    assert items[0][0] == "job_id"
    assert items[1:4] == [("data", b"one\n"), ("data", b"two\n"), ("data", b"three\n")]
    result = ended(items)
    assert len(items) == 5
    assert result.status == data.ResultStatus.SUCCESS and result.job_id.value == items[0][1]
    assert result.output.items == [b"one\ntwo\nthree\n"]


def test_a_chunk_arrives_while_its_job_still_runs(server: ServerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    async def scenario() -> list[tuple[str, object]]:
        async with connect(server.port) as c:
            await c.worker.create(command_worker("live", response_type=data.ResponseType.DIRECT))
            request = svc.JobRequest(worker_name="live", args=sh(gated(gate, "first", "second")))
            return await collect(streams(c).enqueue_for_stream(request), open_gate_on_first_data(gate))

    items = run(scenario(), HANG_S)
    assert [i for i in items if i[0] == "data"] == [("data", b"first\n"), ("data", b"second\n")]
    assert ended(items).status == data.ResultStatus.SUCCESS


def test_a_late_listener_gets_the_chunks_it_missed_while_the_job_runs_and_after_it_ended(
        server: ServerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    name = "late-listeners"

    async def scenario() -> tuple[list[tuple[str, object]], list[tuple[str, object]], list[tuple[str, object]]]:
        async with connect(server.port) as c:
            worker = (await c.worker.create(command_worker(name, response_type=data.ResponseType.LISTEN_AFTER,
                                                           **STORE_ALL))).id
            stream = streams(c).enqueue_for_stream(svc.JobRequest(worker_name=name, args=sh(gated(gate, "a", "b"))))
            first = [await stream.__anext__(), await stream.__anext__()]  # the id, then chunk `a`
            job_id = first[0].job_id
            assert first[1].data == b"a\n"
            # While the job waits for the gate: a second listener gets `a` replayed, then the rest.
            late = streams(c).listen_stream(ext.ListenStreamRequest(job_id=job_id))
            replayed = await late.__anext__()
            assert replayed.data == b"a\n"
            gate.touch()
            rest = await collect(stream)
            late_rest = await collect(late)
            # After the end: a third listener gets what was kept, then the result.
            await c.job_result.listen(svc.ListenRequest(job_id=job_id, worker_id=worker, timeout=HANG_S * 1000))
            after = await collect(streams(c).listen_stream(ext.ListenStreamRequest(job_id=job_id)))
            return rest, late_rest, after

    rest, late_rest, after = run(scenario(), HANG_S)
    for items in (rest, late_rest):
        assert items[:-1] == [("data", b"b\n")]
        assert ended(items).status == data.ResultStatus.SUCCESS
    assert after[:-1] == [("data", b"a\n"), ("data", b"b\n")]
    assert ended(after).output.items == [b"a\nb\n"]


def test_a_failing_command_sends_its_chunks_then_its_failed_result(server: ServerProcess) -> None:
    async def scenario() -> list[tuple[str, object]]:
        async with connect(server.port) as c:
            await c.worker.create(command_worker("failing", response_type=data.ResponseType.DIRECT))
            request = svc.JobRequest(worker_name="failing", args=sh("echo partial; echo more; exit 3"))
            return await collect(streams(c).enqueue_for_stream(request))

    items = run(scenario(), HANG_S)
    assert items[1:-1] == [("data", b"partial\n"), ("data", b"more\n")]
    result = ended(items)
    assert result.status not in (data.ResultStatus.SUCCESS, data.ResultStatus.OTHER_ERROR)
    assert b"exit code 3" in result.output.items[0]


def test_a_retried_job_streams_the_chunks_of_every_attempt_in_order(server: ServerProcess, tmp_path: Path) -> None:
    marker = tmp_path / "attempted"
    script = f"if [ -e '{marker}' ]; then echo attempt 2; else touch '{marker}'; echo attempt 1; exit 1; fi"
    retry = data.RetryPolicy(type=data.RetryType.CONSTANT, interval=10, max_retry=1, basis=1.0)

    async def scenario() -> list[tuple[str, object]]:
        async with connect(server.port) as c:
            await c.worker.create(command_worker("retried", response_type=data.ResponseType.DIRECT,
                                                 retry_policy=retry))
            return await collect(streams(c).enqueue_for_stream(svc.JobRequest(worker_name="retried", args=sh(script))))

    items = run(scenario(), HANG_S)
    assert items[1:-1] == [("data", b"attempt 1\n"), ("data", b"attempt 2\n")]
    assert ended(items).status == data.ResultStatus.SUCCESS and ended(items).output.items == [b"attempt 2\n"]


def test_a_plugins_yielded_chunks_arrive_one_by_one_and_its_output_is_them_joined(server: ServerProcess) -> None:
    settings = proto_messages(hello.SETTINGS_PROTO).HelloRunnerSettings(name="w").SerializeToString()
    args = proto_messages(hello.ARGS_PROTO).HelloArgs(arg="streamed").SerializeToString()

    async def scenario() -> list[tuple[str, object]]:
        async with connect(server.port) as c:
            runners = {r.data.name: r async for r in c.runner.find_list(svc.FindListRequest())}
            await c.worker.create(data.WorkerData(name="hello-streamed", runner_id=runners["hello"].id,
                                                  runner_settings=settings, response_type=data.ResponseType.DIRECT))
            return await collect(streams(c).enqueue_for_stream(svc.JobRequest(worker_name="hello-streamed",
                                                                              args=args)))

    items = run(scenario(), HANG_S)
    assert items[1:-1] == [("data", b"SUCCESS: "), ("data", b"arg=streamed")]
    result = ended(items)
    assert result.status == data.ResultStatus.SUCCESS and result.output.items == [b"SUCCESS: arg=streamed"]


def test_a_job_not_enqueued_for_streaming_sends_no_chunk(server: ServerProcess, tmp_path: Path) -> None:
    gate, started = tmp_path / "gate", tmp_path / "started"
    name = "not-streamed"
    script = f"echo printed; touch '{started}'; " + gated(gate, "more", "last")

    async def scenario() -> list[tuple[str, object]]:
        async with connect(server.port) as c:
            await c.worker.create(command_worker(name, response_type=data.ResponseType.LISTEN_AFTER, **STORE_ALL))
            job_id = (await c.job.enqueue(svc.JobRequest(worker_name=name, args=sh(script)))).id
            listener = streams(c).listen_stream(ext.ListenStreamRequest(job_id=job_id))
            first = asyncio.ensure_future(listener.__anext__())  # following it, from now on
            # Until it has printed (and, were it streamed, sent) its first lines: a file the job
            # writes has no event to wait on.
            while not started.exists():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            gate.touch()
            return [plain(await first), *await collect(listener)]

    items = run(scenario(), HANG_S)
    assert [kind for kind, _ in items] == ["end"]
    assert ended(items).output.items == [b"printed\nmore\nlast\n"]


def test_listen_stream_of_an_unknown_job_is_not_found(server: ServerProcess) -> None:
    async def scenario() -> GRPCError:
        async with connect(server.port) as c:
            with pytest.raises(GRPCError) as info:
                await collect(streams(c).listen_stream(ext.ListenStreamRequest(job_id=data.JobId(value=4242))))
            return info.value

    assert run(scenario(), HANG_S).status == Status.NOT_FOUND


def test_enqueue_for_stream_refuses_what_enqueue_refuses_with_the_same_answer(server: ServerProcess) -> None:
    async def scenario() -> tuple[GRPCError, GRPCError]:
        async with connect(server.port) as c:
            request = svc.JobRequest(worker_name="no-such-worker")
            with pytest.raises(GRPCError) as streamed:
                await collect(streams(c).enqueue_for_stream(request))
            with pytest.raises(GRPCError) as enqueued:
                await c.job.enqueue(request)
            return streamed.value, enqueued.value

    streamed, enqueued = run(scenario(), HANG_S)
    assert (streamed.status, streamed.message) == (enqueued.status, enqueued.message)
