"""Decorated functions served by a real server: through the client, the CLI and raw gRPC alike,
and a crash that fails only its own job."""

from __future__ import annotations

import asyncio
import json

import pytest
from google.protobuf import json_format
from shapes import Box, Point, add, checksum, crash, grow, host_pid, refuse

from jobworkerp.client import Client, JobFailed
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.runners.plugins import proto_messages
from jobworkerp.testing.server import connect, run
from tests.cli.conftest import run_cli

pytestmark = pytest.mark.timeout(180)

BOX = Box(Point(1.5, -2.0), 10, 20, ["a"], {"k": 7}, None)


def test_a_dataclass_function_through_the_client_the_cli_and_grpc_gives_one_result(address: str, server) -> None:
    expected = grow(BOX, by=2, label="big")  # the plain function, called here

    async def through_client() -> tuple[Box, list[dict], str]:
        async with Client(address) as client:
            value = await client.call(grow, BOX, by=2, label="big")
            worker = await client.get_worker("grow")  # made by call(): DIRECT, named as the runner
            assert worker.response_type == "DIRECT" and worker.runner.name == "grow"
            args = {"box": {"corner": {"x": 1.5, "y": -2.0}, "width": 10, "height": 20, "tags": ["a"],
                            "labels": {"k": 7}}, "by": 2, "label": "big"}
            as_dicts = await client.run("grow", args)
            return value, as_dicts, worker.runner.result_proto or ""

    value, as_dicts, result_proto = run(through_client())
    assert value == expected
    assert as_dicts == [{"corner": {"x": -0.5, "y": -4.0}, "width": "14", "height": "24", "tags": ["a", "big"],
                         "labels": {"k": "7", "grown": "2"}}]  # protobuf's JSON mapping: int64 as strings

    cli_args = json.dumps({"box": {"corner": {"x": 1.5, "y": -2}, "width": 10, "height": 20, "tags": ["a"],
                                   "labels": {"k": 7}}, "by": 2, "label": "big"})
    cli = run_cli(f"http://{address}", "--json", "job", "enqueue", "--worker", "grow", "--args", cli_args).ok()
    assert cli.json()["result"]["status"] == "SUCCESS"
    assert cli.json()["result"]["output"] == as_dicts

    async def through_grpc() -> bytes:
        async with connect(server.port) as stubs:
            runner = [r async for r in stubs.runner.find_list(svc.FindListRequest()) if r.data.name == "grow"][0]
            Args = proto_messages(runner.data.job_args_proto).GrowArgs  # noqa: N806 - a message class
            args = Args(box={"corner": {"x": 1.5, "y": -2.0}, "width": 10, "height": 20, "tags": ["a"],
                             "labels": {"k": 7}}, by=2, label="big")
            reply = await stubs.job.enqueue(svc.JobRequest(worker_name="grow", args=args.SerializeToString()))
            assert reply.result.data.status.name == "SUCCESS"
            return reply.result.data.output.items[0]

    raw = run(through_grpc())
    decoded = json_format.MessageToDict(proto_messages(result_proto).Box.FromString(raw),
                                        preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    assert [decoded] == as_dicts


def test_functions_are_runners_the_cli_lists(address: str) -> None:
    listed = {r["name"]: r for r in run_cli(f"http://{address}", "--json", "runner", "list").ok().json_lines()}
    assert listed["grow"]["runner_type"] == "PLUGIN"
    assert listed["grow"]["args_message"] == "GrowArgs" and listed["grow"]["result_message"] == "Box"
    assert listed["add"]["result_message"] == "AddResult" and listed["crash"]["result_message"] is None


def test_async_bytes_and_optional_values(address: str) -> None:
    async def scenario() -> None:
        async with Client(address) as client:
            assert await client.call(add, 2, b=40) == 42
            assert await client.call(checksum, b"\x00\x01\xff") == b"\xff\xfe\x00"
            assert await client.call(checksum, b"\x00\x01\xff", rounds=2) == b"\x00\x01\xff"
            assert await client.call(grow, BOX) == grow(BOX)  # defaults applied on the server side
            with pytest.raises(TypeError):  # checked like a local call, before anything is sent
                await client.call(add, 1)

    run(scenario())


def test_a_raising_function_fails_its_job_with_the_reason(address: str) -> None:
    async def scenario() -> None:
        async with Client(address) as client:
            with pytest.raises(JobFailed) as failed:
                await client.call(refuse, "no thanks")
            assert failed.value.status == "OTHER_ERROR"
            assert "ValueError: no thanks" in failed.value.output[0]

    run(scenario())


def test_a_segfaulting_function_fails_only_its_job(address: str, server) -> None:
    async def scenario() -> None:
        async with Client(address) as client:
            pids = {await client.call(host_pid) for _ in range(2)}
            outcomes = await asyncio.gather(client.call(crash), *(client.call(add, i, i) for i in range(6)),
                                            return_exceptions=True)
            crashed, sums = outcomes[0], outcomes[1:]
            assert isinstance(crashed, JobFailed), crashed
            assert crashed.status in ("ERROR_AND_RETRY", "MAX_RETRY")  # a crashed host is retryable
            assert "SIGSEGV" in crashed.output[0]
            assert sums == [2 * i for i in range(6)]
            assert await client.call(add, 20, 22) == 42  # a new host took the crashed one's place
            # the concurrent function's jobs share one host, which outlived the crash
            assert await client.call(host_pid) in pids

    run(scenario(), timeout=150)
    assert server.alive()
