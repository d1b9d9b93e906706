"""One trace per job, from the client's Enqueue to the runner host and the result, in both
storage modes: real servers in this process (so their spans reach the in-memory exporter), real
runner hosts (separate processes), a real gRPC client sending a W3C `traceparent`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import httpx
import pytest
import trio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from jobworkerp.proto.jobworkerp import data, ext
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import connect, free_port
from tests.e2e.grpc_web_client import call
from tests.tracing.harness import client, named, of_job, serving, wait_for

pytestmark = pytest.mark.timeout(180)

COMMAND = data.RunnerId(value=1)
ENQUEUE = "jobworkerp.service.JobService/Enqueue"


def client_context() -> tuple[int, int, str]:
    """A client span's trace id and span id, and the traceparent header naming it."""
    trace_id, span_id = secrets.randbits(128) | 1, secrets.randbits(64) | 1
    return trace_id, span_id, f"00-{trace_id:032x}-{span_id:016x}-01"


def shell(name: str, **fields: object) -> data.WorkerData:
    settings = bytes(runner_pb.CommandRunnerSettings(name="sh"))
    return data.WorkerData(name=name, runner_id=COMMAND, runner_settings=settings, **fields)  # type: ignore[arg-type]


def script(text: str) -> bytes:
    return bytes(runner_pb.CommandArgs(args=["-c", text]))


def assert_one_trace(job: list[ReadableSpan], trace_id: int) -> None:
    assert job, "no spans for the job"
    assert {s.context.trace_id for s in job} == {trace_id}, [(s.name, f"{s.context.trace_id:032x}") for s in job]


def assert_host_span(job: list[ReadableSpan]) -> ReadableSpan:
    """The run's span in the runner host: recorded in another process, child of `job.run`."""
    [run] = named(job, "job.run")
    [host] = named(job, "job.host")
    assert host.parent is not None and host.parent.span_id == run.context.span_id
    pid = (host.attributes or {})["process.pid"]
    assert isinstance(pid, int) and pid != os.getpid()
    return host


async def traced_direct_job(port: int, traceparent: str) -> svc.CreateJobResponse:
    async def scenario() -> svc.CreateJobResponse:
        async with connect(port) as c:
            await c.worker.create(shell("traced", response_type=data.ResponseType.DIRECT))
            return await c.job.enqueue(svc.JobRequest(worker_name="traced", args=script("echo $TRACEPARENT")),
                                       metadata={"traceparent": traceparent})

    return await client(scenario)


async def check_job_trace(exporter: InMemorySpanExporter, port: int) -> None:
    trace_id, client_span, traceparent = client_context()
    answer = await traced_direct_job(port, traceparent)
    assert answer.result is not None and answer.result.data.status == data.ResultStatus.SUCCESS
    job_id = answer.id.value
    await wait_for("the job's result delivery span", lambda: bool(named(of_job(exporter, job_id), "job.deliver")))
    job = of_job(exporter, job_id)
    assert_one_trace(job, trace_id)
    [enqueue] = named(job, ENQUEUE)
    assert enqueue.kind == SpanKind.SERVER
    assert enqueue.parent is not None and enqueue.parent.span_id == client_span and enqueue.parent.is_remote
    [wait] = named(job, "job.queue_wait")
    [run] = named(job, "job.run")
    [deliver] = named(job, "job.deliver")
    for span in (wait, run, deliver):  # each continues the context the job carried from Enqueue
        assert span.parent is not None and span.parent.span_id == enqueue.context.span_id
        assert (span.attributes or {})["jobworkerp.worker.name"] == "traced"
        assert (span.attributes or {})["jobworkerp.channel"]
    assert (run.attributes or {})["jobworkerp.runner"] == "COMMAND"
    assert (deliver.attributes or {})["jobworkerp.job.status"] == "SUCCESS"
    host = assert_host_span(job)
    # The command ran with the host span's context in TRACEPARENT.
    assert answer.result.data.output.items == [f"00-{trace_id:032x}-{host.context.span_id:016x}-01\n".encode()]


async def test_standalone_one_trace_from_the_clients_enqueue_to_the_runner_host(
        spans: InMemorySpanExporter, tmp_path: Path) -> None:
    async with serving({"SQLITE_DBNAME": str(tmp_path / "db.sqlite3")}) as port:
        await check_job_trace(spans, port)


async def test_scalable_front_and_worker_join_one_trace_through_the_stored_context(
        spans: InMemorySpanExporter, scalable: dict[str, str]) -> None:
    """A grpc-front and a worker (two servers sharing Redis and MariaDB; one process here, so
    one exporter): the worker's spans continue the front's Enqueue span only through the
    context kept with the job in Redis."""
    async with serving(scalable, "worker"), serving(scalable, "grpc-front") as port:
        await check_job_trace(spans, port)


async def test_retries_and_next_workers_stay_in_the_trace(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    """Each attempt of a retried job runs in the job's trace (its failed host span marked so),
    and a next_workers job continues the trace under the first job's delivery."""
    chained_args = tmp_path / "chained-args"
    chained_args.write_bytes(script("echo chained"))
    trace_id, _, traceparent = client_context()

    async def scenario() -> tuple[int, int]:
        async with connect(port) as c:
            await c.worker.create(shell("flaky", response_type=data.ResponseType.DIRECT, retry_policy=data.RetryPolicy(
                type=data.RetryType.CONSTANT, interval=10, max_retry=1, basis=1.0)))
            failed = await c.job.enqueue(svc.JobRequest(worker_name="flaky", args=script("exit 3")),
                                         metadata={"traceparent": traceparent})
            second = (await c.worker.create(shell("second"))).id
            await c.worker.create(data.WorkerData(
                name="first", runner_id=COMMAND, runner_settings=bytes(runner_pb.CommandRunnerSettings(name="cat")),
                next_workers=[second]))
            first = await c.job.enqueue(svc.JobRequest(worker_name="first", args=bytes(runner_pb.CommandArgs(
                args=[str(chained_args)]))), metadata={"traceparent": traceparent})
            assert failed.result is not None and failed.result.data.status == data.ResultStatus.MAX_RETRY
            return failed.id.value, first.id.value

    async with serving({"SQLITE_DBNAME": str(tmp_path / "db.sqlite3")}) as port:
        failed_id, first_id = await client(scenario)

        def chained() -> list[ReadableSpan]:
            return [s for s in spans.get_finished_spans()
                    if (s.attributes or {}).get("jobworkerp.worker.name") == "second"]

        await wait_for("both attempts delivered", lambda: len(named(of_job(spans, failed_id), "job.deliver")) == 2)
        await wait_for("the next worker's job delivered", lambda: bool(named(chained(), "job.deliver")))

    attempts = of_job(spans, failed_id)
    assert_one_trace(attempts, trace_id)
    hosts = named(attempts, "job.host")
    assert len(hosts) == 2 and all(h.status.status_code == StatusCode.ERROR for h in hosts)
    assert sorted((s.attributes or {})["jobworkerp.job.retried"] for s in named(attempts, "job.run")) == [0, 1]
    [first_delivery] = named(of_job(spans, first_id), "job.deliver")
    next_job = chained()
    assert_one_trace(next_job, trace_id)
    [next_wait] = named(next_job, "job.queue_wait")
    assert next_wait.parent is not None and next_wait.parent.span_id == first_delivery.context.span_id
    assert_host_span(next_job)


async def test_without_a_client_context_a_job_gets_a_trace_of_its_own(
        spans: InMemorySpanExporter, tmp_path: Path) -> None:
    async def scenario() -> svc.CreateJobResponse:
        async with connect(port) as c:
            await c.worker.create(shell("plain", response_type=data.ResponseType.DIRECT))
            return await c.job.enqueue(svc.JobRequest(worker_name="plain", args=script("true")))

    async with serving({"SQLITE_DBNAME": str(tmp_path / "db.sqlite3")}) as port:
        job_id = (await client(scenario)).id.value
        await wait_for("the job's result delivery span", lambda: bool(named(of_job(spans, job_id), "job.deliver")))
    job = of_job(spans, job_id)
    [enqueue] = named(job, ENQUEUE)
    assert enqueue.parent is None
    assert_one_trace(job, enqueue.context.trace_id)
    assert_host_span(job)


async def test_grpc_web_enqueue_continues_the_clients_trace(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    """A page's traceparent header reaches the Enqueue span through grpc-web as through gRPC."""
    trace_id, client_span, traceparent = client_context()
    web_port = free_port()

    async def create_worker() -> None:
        async with connect(port) as c:
            await c.worker.create(shell("web", response_type=data.ResponseType.DIRECT))

    def enqueue_over_grpc_web() -> svc.CreateJobResponse:
        request = bytes(svc.JobRequest(worker_name="web", args=script("true")))
        with httpx.Client() as http:
            answer = call(http, web_port, "jobworkerp.service.JobService/Enqueue", request,
                          headers={"traceparent": traceparent})
        assert answer.grpc_status == 0, answer.grpc_message
        return svc.CreateJobResponse.parse(answer.messages[0])

    env = {"SQLITE_DBNAME": str(tmp_path / "db.sqlite3"), "USE_GRPC_WEB": "true",
           "GRPC_WEB_ADDR": f"127.0.0.1:{web_port}"}
    async with serving(env) as port:
        await client(create_worker)
        job_id = (await trio.to_thread.run_sync(enqueue_over_grpc_web)).id.value
        await wait_for("the job's result delivery span", lambda: bool(named(of_job(spans, job_id), "job.deliver")))
    job = of_job(spans, job_id)
    assert_one_trace(job, trace_id)
    [enqueue] = named(job, ENQUEUE)
    assert enqueue.parent is not None and enqueue.parent.span_id == client_span
    assert_host_span(job)


async def test_a_streamed_job_is_traced_like_any_other(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    """EnqueueForStream reads the client's traceparent as Enqueue does: the job's extras hold
    both its trace context and its stream flag, and the chunks still arrive before the result."""
    trace_id, client_span, traceparent = client_context()

    async def scenario() -> list[ext.JobOutputItem]:
        async with connect(port) as c:
            await c.worker.create(shell("streamed-traced"))
            stream = ext.JobStreamServiceStub(c.channel)
            request = svc.JobRequest(worker_name="streamed-traced", args=script("echo one; echo two"))
            return [item async for item in stream.enqueue_for_stream(request, metadata={"traceparent": traceparent})]

    async with serving({"SQLITE_DBNAME": str(tmp_path / "db.sqlite3")}) as port:
        items = await client(scenario)
        job_id = items[0].job_id.value
        await wait_for("the job's result delivery span", lambda: bool(named(of_job(spans, job_id), "job.deliver")))
    assert [i.data for i in items[1:-1]] == [b"one\n", b"two\n"]
    assert items[-1].end is not None and items[-1].end.data.status == data.ResultStatus.SUCCESS
    job = of_job(spans, job_id)
    assert_one_trace(job, trace_id)
    [enqueue] = named(job, ENQUEUE)
    assert enqueue.parent is not None and enqueue.parent.span_id == client_span
    assert_host_span(job)
