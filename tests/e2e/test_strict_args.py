"""Job args that do not parse as the runner's args message are refused at Enqueue, naming `args`.

Before this check such args ran as an empty message (betterproto2 tolerates garbage), so a caller
with a broken encoder saw SUCCESS. GRPC_UNARY has no args message (its args are the raw request
of the called method), so any bytes stay accepted there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobworkerp.clock import now_ms
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.runners.plugins import proto_messages
from jobworkerp.runners.proto_text import compile_proto, first_message
from jobworkerp.runners.registry import BUILTIN_RUNNERS, RunnerSpec
from jobworkerp.testing.server import Client, ServerProcess, connect, run
from plugins import hello
from tests.e2e.test_bad_input import status_of

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
COMMAND, GRPC_UNARY = data.RunnerId(value=1), data.RunnerId(value=3)
ECHO_SETTINGS = bytes(runner_pb.CommandRunnerSettings(name="echo"))
HELLO_SETTINGS = proto_messages(hello.SETTINGS_PROTO).HelloRunnerSettings(name="w").SerializeToString()
HELLO_ARGS = proto_messages(hello.ARGS_PROTO).HelloArgs
ONE_HOUR_MS = 3_600_000
MakeWorker = Callable[[Client], Awaitable[data.WorkerId]]

NOT_MESSAGES = {
    "garbage": b"\xff\xff\xff",
    "truncated": b"\x0a\x05ab",  # field 1 claims 5 bytes, 2 follow
    "bad utf-8": b"\x0a\x02\xff\xfe",  # a string field must hold UTF-8
    "wrong wire type": b"\x08\x01",  # field 1 is a string, sent as a varint
    "impossible wire type": b"\x0f",  # wire type 7 does not exist
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with the example `hello` plugin (PLUGINS_RUNNER_DIR=plugins)."""
    proc = ServerProcess(tmp_path_factory.mktemp("strict-args"), {"PLUGINS_RUNNER_DIR": str(ROOT / "plugins")}).start()
    yield proc
    assert proc.stop() == 0, proc.log()


async def hello_id(c: Client) -> data.RunnerId:
    """The `hello` plugin's runner id (a snowflake given at seeding)."""
    runners = {r.data.name: r async for r in c.runner.find_list(svc.FindListRequest())}
    return runners["hello"].id


async def create(c: Client, name: str, runner_id: data.RunnerId, settings: bytes,
                 response_type: data.ResponseType = data.ResponseType.DIRECT) -> data.WorkerId:
    wd = data.WorkerData(name=name, runner_id=runner_id, runner_settings=settings, response_type=response_type)
    return (await c.worker.create(wd)).id


def enqueue_refusal(port: int, make_worker: MakeWorker, args: bytes) -> str:
    """Create a worker with `make_worker(c)`, enqueue `args` to it; the INVALID_ARGUMENT message."""
    async def scenario(c: Client) -> None:
        await c.job.enqueue(svc.JobRequest(worker_id=await make_worker(c), args=args))

    status, message = status_of(port, scenario)
    assert status == Status.INVALID_ARGUMENT, message
    return message


async def refused(call: Awaitable[object]) -> tuple[Status, str]:
    """The gRPC status a call fails with (it must fail)."""
    try:
        await call
    except GRPCError as e:
        return e.status, e.message or ""
    raise AssertionError("the call succeeded")


def direct_result(port: int, make_worker: MakeWorker, args: bytes) -> data.JobResultData:
    """Create a DIRECT worker with `make_worker(c)` and run one job with `args`; its result."""
    async def scenario() -> data.JobResultData:
        async with connect(port) as c:
            response = await c.job.enqueue(svc.JobRequest(worker_id=await make_worker(c), args=args))
            assert response.result is not None
            return response.result.data

    return run(scenario())


@pytest.mark.parametrize("args", NOT_MESSAGES.values(), ids=NOT_MESSAGES.keys())
def test_command_refuses_args_that_are_not_command_args(server: ServerProcess, args: bytes) -> None:
    name = f"echo-{args.hex()}"
    message = enqueue_refusal(server.port, lambda c: create(c, name, COMMAND, ECHO_SETTINGS), args)
    assert message.startswith("args: is not a valid jobworkerp.runner.CommandArgs: "), message


def test_wrong_wire_type_names_the_field(server: ServerProcess) -> None:
    message = enqueue_refusal(server.port, lambda c: create(c, "echo-wire", COMMAND, ECHO_SETTINGS), b"\x08\x01")
    assert message.startswith("args: ") and "field args (1)" in message and "wire type 0" in message, message


@pytest.mark.parametrize("args", NOT_MESSAGES.values(), ids=NOT_MESSAGES.keys())
def test_plugin_refuses_args_that_are_not_its_args_message(server: ServerProcess, args: bytes) -> None:
    async def make_worker(c: Client) -> data.WorkerId:
        return await create(c, f"hello-{args.hex()}", await hello_id(c), HELLO_SETTINGS)

    message = enqueue_refusal(server.port, make_worker, args)
    assert message.startswith("args: is not a valid hello.HelloArgs: "), message


def test_a_refused_job_takes_nothing(server: ServerProcess) -> None:
    """The check comes before the uniq_key is taken, so a corrected retry with the same key goes through."""
    async def scenario() -> data.JobResultData:
        async with connect(server.port) as c:
            worker_id = await create(c, "echo-retry", COMMAND, ECHO_SETTINGS)
            request = svc.JobRequest(worker_id=worker_id, args=b"\xff", uniq_key="strict-args-retry")
            status, _ = await refused(c.job.enqueue(request))
            assert status == Status.INVALID_ARGUMENT
            request.args = bytes(runner_pb.CommandArgs(args=["fixed"]))
            response = await c.job.enqueue(request)
            assert response.result is not None
            return response.result.data

    result = run(scenario())
    assert result.status == data.ResultStatus.SUCCESS
    assert result.output.items[0] == b"fixed\n"


def test_valid_and_empty_command_args_run(server: ServerProcess) -> None:
    valid = direct_result(server.port, lambda c: create(c, "echo-valid", COMMAND, ECHO_SETTINGS),
                          bytes(runner_pb.CommandArgs(args=["hello", "world"])))
    assert valid.status == data.ResultStatus.SUCCESS and valid.output.items[0] == b"hello world\n"
    empty = direct_result(server.port, lambda c: create(c, "echo-empty", COMMAND, ECHO_SETTINGS), b"")
    assert empty.status == data.ResultStatus.SUCCESS and empty.output.items[0] == b"\n"


def test_valid_and_empty_plugin_args_run(server: ServerProcess) -> None:
    async def worker(c: Client, name: str) -> data.WorkerId:
        return await create(c, name, await hello_id(c), HELLO_SETTINGS)

    valid = direct_result(server.port, lambda c: worker(c, "hello-valid"), HELLO_ARGS(arg="x").SerializeToString())
    assert valid.status == data.ResultStatus.SUCCESS and valid.output.items[0] == b"SUCCESS: arg=x"
    empty = direct_result(server.port, lambda c: worker(c, "hello-empty"), b"")
    assert empty.status == data.ResultStatus.SUCCESS and empty.output.items[0] == b"SUCCESS: arg="


def test_grpc_unary_accepts_any_bytes(server: ServerProcess) -> None:
    """Raw request bytes are not ours to judge: the jobs are queued (for later, then deleted unrun)."""
    settings = bytes(runner_pb.GrpcUnaryRunnerSettings(url=f"http://127.0.0.1:{server.port}",
                                                       path="jobworkerp.service.RunnerService/Count"))

    async def scenario() -> None:
        async with connect(server.port) as c:
            worker_id = await create(c, "grpc-raw", GRPC_UNARY, settings, data.ResponseType.NO_RESULT)
            for args in (b"", *NOT_MESSAGES.values()):
                request = svc.JobRequest(worker_id=worker_id, args=args, run_after_time=now_ms() + ONE_HOUR_MS)
                job_id = (await c.job.enqueue(request)).id
                assert job_id is not None and job_id.value > 0
                assert (await c.job.delete(job_id)).is_success

    run(scenario())


def test_settings_with_a_wrong_wire_type_are_refused_too(server: ServerProcess) -> None:
    """Settings and args share one check, so settings get the wire type check as well."""
    status, message = status_of(server.port, lambda c: c.worker.create(data.WorkerData(
        name="echo-bad-settings", runner_id=COMMAND, runner_settings=b"\x08\x01")))
    assert status == Status.INVALID_ARGUMENT
    assert message.startswith("runner_settings: ") and "wire type 0" in message, message


def _first_message(text: str) -> str | None:
    return first_message(compile_proto(text)) if text.strip() else None


@pytest.mark.parametrize("spec", BUILTIN_RUNNERS, ids=lambda s: s.name)
def test_builtin_args_message_is_the_first_message_of_the_args_proto(spec: RunnerSpec) -> None:
    """What Enqueue enforces is what RunnerService advertises as the args type (none for GRPC_UNARY)."""
    assert spec.args_message == _first_message(spec.args_proto)
