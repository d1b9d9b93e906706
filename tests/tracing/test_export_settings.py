"""OTLP_ADDR and ZIPKIN_ADDR in a real server process: spans leave through the exporters, an
unreachable collector costs only log lines, and a malformed address stops start-up naming it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jobworkerp.config import ConfigError, load_config
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, free_port, run

pytestmark = pytest.mark.timeout(120)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class ZipkinCollector:
    """A Zipkin collector's span endpoint: keeps every span POSTed to it."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.spans.extend(json.loads(body))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v2/spans"


@pytest.fixture
def zipkin() -> Iterator[ZipkinCollector]:
    collector = ZipkinCollector()
    thread = threading.Thread(target=collector.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        collector.server.shutdown()
        collector.server.server_close()


def run_traced_job(server: ServerProcess) -> svc.CreateJobResponse:
    async def scenario() -> svc.CreateJobResponse:
        async with connect(server.port) as c:
            await c.worker.create(data.WorkerData(
                name="echo", runner_id=data.RunnerId(value=1), response_type=data.ResponseType.DIRECT,
                runner_settings=bytes(runner_pb.CommandRunnerSettings(name="echo"))))
            request = svc.JobRequest(worker_name="echo", args=bytes(runner_pb.CommandArgs(args=["hi"])))
            return await c.job.enqueue(request, metadata={"traceparent": TRACEPARENT})

    return run(scenario())


def test_spans_reach_zipkin_and_an_unreachable_otlp_collector_only_logs(tmp_path: Path,
                                                                         zipkin: ZipkinCollector) -> None:
    """The OTLP collector's port is closed: export fails there (logged), jobs run all the same,
    and the Zipkin collector gets the job's spans, the runner host's among them, by the stop."""
    unreachable = f"http://127.0.0.1:{free_port()}"
    server = ServerProcess(tmp_path, {"OTLP_ADDR": unreachable, "ZIPKIN_ADDR": zipkin.url}).start()
    try:
        answer = run_traced_job(server)
    finally:
        assert server.stop() == 0, server.log()  # the last spans are flushed on the way out
    assert answer.result is not None and answer.result.data.status == data.ResultStatus.SUCCESS
    ours = [span for span in zipkin.spans if span["traceId"] == TRACE_ID]
    names = {span["name"] for span in ours}
    assert {"jobworkerp.service.jobservice/enqueue", "job.queue_wait", "job.run", "job.host",
            "job.deliver"} <= {name.lower() for name in names}, names
    assert all(span["localEndpoint"]["serviceName"] == "jobworkerp" for span in ours)
    assert "tracing: exporting spans to OTLP" in server.log()


@pytest.mark.parametrize(("variable", "value"), [
    ("OTLP_ADDR", "otel-collector:4317"),
    ("OTLP_ADDR", "http://otel-collector:4318/v1/traces"),
    ("OTLP_ADDR", "grpc://otel-collector:4317"),
    ("ZIPKIN_ADDR", "zipkin:9411"),
    ("ZIPKIN_ADDR", "http://zipkin:port/api/v2/spans"),
])
def test_a_malformed_collector_address_is_refused_naming_it(variable: str, value: str) -> None:
    """Refused at start-up (exit 2 naming the variable: tests/e2e/test_upstream_settings.py)."""
    with pytest.raises(ConfigError) as refused:
        load_config({variable: value}, dotenv_path=None)
    assert refused.value.variable == variable


def test_collector_addresses_are_read_as_documented() -> None:
    config = load_config({"OTLP_ADDR": "https://otel.example", "ZIPKIN_ADDR": "http://zipkin:9411"}, dotenv_path=None)
    assert (config.otlp_addr, config.zipkin_addr) == ("https://otel.example:4317", "http://zipkin:9411/api/v2/spans")
    config = load_config({"OTLP_ADDR": "http://127.0.0.1:4317/"}, dotenv_path=None)
    assert (config.otlp_addr, config.zipkin_addr) == ("http://127.0.0.1:4317", None)
