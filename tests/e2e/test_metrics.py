"""METRICS_ADDR: after a few jobs, /metrics shows what a user would check — jobs enqueued,
started and finished by worker, channel and status, runs timed, gRPC calls by method and code,
running jobs and queue depth per channel, runner host restarts by cause — in both storage modes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from grpclib.exceptions import GRPCError

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, free_port, run
from tests.e2e.metrics_client import Samples, metrics_url, scrape, wait_for_samples, wait_for_samples_async
from tests.e2e.servers import STORAGE_MODES, server_in_mode
from tests.e2e.test_server_kill import _children, _wait_for

pytestmark = pytest.mark.timeout(300)
DEFAULT = "__default_job_channel__"
ENQUEUE = "/jobworkerp.service.JobService/Enqueue"
CREATE_WORKER = "/jobworkerp.service.WorkerService/Create"


@dataclass
class MetricsServer:
    proc: ServerProcess
    metrics_port: int


@pytest.fixture(scope="module", params=STORAGE_MODES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsServer]:
    """A server with metrics on, the default channel and a channel `single` of concurrency 1."""
    port = free_port()
    env = {"METRICS_ADDR": f"127.0.0.1:{port}", "WORKER_CHANNELS": "single", "WORKER_CHANNEL_CONCURRENCIES": "1"}
    with server_in_mode(request.param, tmp_path_factory.mktemp(f"metrics-{request.param}"), env) as proc:
        yield MetricsServer(proc, port)


def command_worker(name: str, command: str, **kwargs: object) -> data.WorkerData:
    return data.WorkerData(name=name, runner_id=data.RunnerId(value=1),
                           runner_settings=bytes(runner_pb.CommandRunnerSettings(name=command)), **kwargs)


def args(*argv: str) -> bytes:
    return bytes(runner_pb.CommandArgs(args=list(argv)))


def test_metrics_count_the_jobs_run_and_the_calls_answered(server: MetricsServer) -> None:
    port = server.metrics_port
    before = scrape(port)

    async def scenario() -> tuple[list[data.ResultStatus], str]:
        async with connect(server.proc.port) as c:
            direct = data.ResponseType.DIRECT
            await c.worker.create(command_worker("m-echo", "echo", response_type=direct))
            # One retry: the failing job runs twice, and ends once.
            await c.worker.create(command_worker("m-fail", "false", response_type=direct, retry_policy=data.RetryPolicy(
                type=data.RetryType.CONSTANT, interval=100, max_retry=1, basis=2.0)))
            try:
                await c.worker.create(command_worker("m-echo", "echo"))
                refused = "nothing"
            except GRPCError as e:
                refused = e.status.name
            replies = [await c.job.enqueue(svc.JobRequest(worker_name="m-echo", args=args(str(i)))) for i in range(3)]
            replies.append(await c.job.enqueue(svc.JobRequest(worker_name="m-fail", args=args())))
            statuses = [reply.result.data.status for reply in replies]
            return statuses, refused

    statuses, refused = run(scenario())
    assert statuses == [data.ResultStatus.SUCCESS] * 3 + [data.ResultStatus.MAX_RETRY]
    assert refused != "nothing"  # a second worker of the same name is refused

    def echo(name: str) -> float | None:
        return m.get(name, worker="m-echo", channel=DEFAULT)

    def fail(name: str) -> float | None:
        return m.get(name, worker="m-fail", channel=DEFAULT)

    m = wait_for_samples(port, "the four jobs counted as finished", lambda s: (
        s.get("jobworkerp_jobs_finished_total", worker="m-echo", channel=DEFAULT, status="SUCCESS") == 3
        and s.get("jobworkerp_jobs_finished_total", worker="m-fail", channel=DEFAULT, status="MAX_RETRY") == 1))
    assert echo("jobworkerp_jobs_enqueued_total") == 3 and fail("jobworkerp_jobs_enqueued_total") == 1
    assert echo("jobworkerp_jobs_started_total") == 3 and fail("jobworkerp_jobs_started_total") == 2  # the retry
    assert m.labelled("jobworkerp_jobs_finished_total", worker="m-echo") == {
        frozenset({("worker", "m-echo"), ("channel", DEFAULT), ("status", "SUCCESS")}): 3}
    assert m.labelled("jobworkerp_jobs_finished_total", worker="m-fail") == {
        frozenset({("worker", "m-fail"), ("channel", DEFAULT), ("status", "MAX_RETRY")}): 1}
    # Every run is timed, and its wait in the queue too.
    assert echo("jobworkerp_job_duration_seconds_count") == 3 and fail("jobworkerp_job_duration_seconds_count") == 2
    assert echo("jobworkerp_job_queue_wait_seconds_count") == 3 and fail("jobworkerp_job_queue_wait_seconds_count") == 2
    assert m.get("jobworkerp_job_duration_seconds_bucket", worker="m-echo", channel=DEFAULT, le="+Inf") == 3

    def calls(samples: Samples, method: str, code: str) -> float:
        return samples.get("jobworkerp_grpc_calls_total", method=method, code=code) or 0

    assert calls(m, ENQUEUE, "OK") - calls(before, ENQUEUE, "OK") == 4
    assert calls(m, CREATE_WORKER, "OK") - calls(before, CREATE_WORKER, "OK") == 2
    assert calls(m, CREATE_WORKER, refused) - calls(before, CREATE_WORKER, refused) == 1
    assert m.get("jobworkerp_running_jobs", channel=DEFAULT) == 0
    assert m.get("jobworkerp_running_jobs", channel="single") == 0
    for cause in ("exit", "signal", "memory_limit", "cancel", "retired", "startup"):
        assert m.get("jobworkerp_runner_host_restarts_total", channel="single", cause=cause) == 0


def test_queue_depth_and_running_jobs_follow_a_busy_channel(server: MetricsServer) -> None:
    """Channel `single` runs one job at a time: while one runs, the others wait in its queue,
    by priority; deleted, they leave it and count as CANCELLED."""
    port = server.metrics_port

    def depth(samples: Samples, priority: str) -> float | None:
        return samples.get("jobworkerp_queue_depth", channel="single", priority=priority)

    async def scenario() -> tuple[Samples, Samples]:
        async with connect(server.proc.port) as c:
            await c.worker.create(command_worker("m-block", "sleep", channel="single",
                                                 response_type=data.ResponseType.NO_RESULT))
            running = (await c.job.enqueue(svc.JobRequest(worker_name="m-block", args=args("600")))).id
            await wait_for_samples_async(port, "the first job running", lambda s: (
                s.get("jobworkerp_running_jobs", channel="single") == 1))
            waiting = [(await c.job.enqueue(svc.JobRequest(worker_name="m-block", args=args("600"),
                                                           priority=priority))).id
                       for priority in (data.Priority.HIGH, data.Priority.HIGH, data.Priority.LOW)]
            busy = await wait_for_samples_async(port, "three jobs queued behind it", lambda s: (
                depth(s, "HIGH") == 2 and depth(s, "LOW") == 1))
            for job_id in [*waiting, running]:  # the queued ones first: none of them may start
                await c.job.delete(job_id)
            done = await wait_for_samples_async(port, "every job ended", lambda s: (
                s.get("jobworkerp_jobs_finished_total", worker="m-block", channel="single", status="CANCELLED") == 4))
            return busy, done

    busy, done = run(scenario(), timeout=300)
    assert depth(busy, "MEDIUM") == 0 and busy.get("jobworkerp_running_jobs", channel="single") == 1
    assert depth(done, "HIGH") == depth(done, "MEDIUM") == depth(done, "LOW") == 0
    assert done.get("jobworkerp_running_jobs", channel="single") == 0
    assert done.get("jobworkerp_jobs_enqueued_total", worker="m-block", channel="single") == 4
    assert done.get("jobworkerp_jobs_started_total", worker="m-block", channel="single") == 1
    assert done.get("jobworkerp_job_duration_seconds_count", worker="m-block", channel="single") == 1


def test_a_killed_runner_host_is_counted_with_its_cause(server: MetricsServer) -> None:
    port = server.metrics_port
    assert server.proc.proc is not None
    pid = server.proc.proc.pid

    def restarts(samples: Samples) -> float | None:
        return samples.get("jobworkerp_runner_host_restarts_total", channel=DEFAULT, cause="signal")

    before = restarts(scrape(port)) or 0
    found: dict[str, int] = {}

    def host_running_the_sleep() -> bool:
        for host in _children(pid):
            if any(_cmdline(child) == ["sleep", "601"] for child in _children(host)):
                found["host"] = host
                return True
        return False

    async def scenario() -> data.JobResult:
        async with connect(server.proc.port) as c:
            worker = (await c.worker.create(command_worker(
                "m-crash", "sleep", response_type=data.ResponseType.LISTEN_AFTER, store_success=True,
                store_failure=True))).id
            job = (await c.job.enqueue(svc.JobRequest(worker_id=worker, args=args("601")))).id
            # A blocking poll, off the client's event loop.
            await asyncio.to_thread(_wait_for, "the job's sleep never ran", host_running_the_sleep)
            os.kill(found["host"], signal.SIGKILL)
            return await c.job_result.listen(svc.ListenRequest(job_id=job, worker_id=worker))

    result = run(scenario(), timeout=300)
    assert result.data.status == data.ResultStatus.MAX_RETRY  # HostCrashed, and no retry policy
    m = wait_for_samples(port, "the killed host counted", lambda s: restarts(s) == before + 1)
    assert m.get("jobworkerp_jobs_finished_total", worker="m-crash", channel=DEFAULT, status="MAX_RETRY") == 1


def test_metrics_answer_only_get_and_head_of_their_path(server: MetricsServer) -> None:
    url = metrics_url(server.metrics_port)
    with httpx.Client(timeout=30) as client:  # one connection, kept alive across the requests
        first, second = client.get(url), client.get(url)
        head = client.head(url)
        post = client.post(url, content=b"x")
        elsewhere = client.get(url.replace("/metrics", "/"))
    assert first.status_code == second.status_code == head.status_code == 200
    assert first.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "jobworkerp_running_jobs" in second.text and head.content == b""
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    assert elsewhere.status_code == 404
    with socket.create_connection(("127.0.0.1", server.metrics_port), timeout=30) as raw:
        raw.sendall(b"not http at all\r\n\r\n")
        assert raw.recv(1024).startswith(b"HTTP/1.1 400 ")
    assert "jobworkerp_running_jobs" in scrape(server.metrics_port).text  # still serving


def test_a_bad_metrics_addr_stops_start_up_naming_it(tmp_path: Path) -> None:
    def start(addr: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "METRICS_ADDR": addr, "GRPC_ADDR": f"127.0.0.1:{free_port()}",
               "SQLITE_DBNAME": str(tmp_path / "db.sqlite3"), "WORKER_DEFAULT_CONCURRENCY": "1"}
        return subprocess.run([sys.executable, "-m", "jobworkerp", "all-in-one", "--env-file",
                               str(tmp_path / "none.env")], env=env, capture_output=True, text=True, timeout=120,
                              cwd=tmp_path)

    malformed = start("nowhere")
    assert malformed.returncode == 2 and "configuration error: METRICS_ADDR: expected HOST:PORT" in malformed.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = start(f"127.0.0.1:{taken.getsockname()[1]}")
    assert busy.returncode == 2, busy.stderr
    assert "configuration error: METRICS_ADDR: cannot listen on 127.0.0.1:" in busy.stderr


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []
