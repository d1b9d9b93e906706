"""The README walkthrough, command for command, against a real all-in-one server."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from tests.cli.conftest import Cli, finish
from tests.cli.streams import LineReader

pytestmark = pytest.mark.timeout(90)

HTTP_ARGS = '{"headers":[],"method":"GET","path":"/search","queries":[{"key":"q","value":"test"}]}'


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).requests.append(self.path)
        body = b"search results for test"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_base_url() -> Iterator[str]:
    """A tiny local HTTP server standing in for www.example.com."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/search"
    httpd.shutdown()
    httpd.server_close()


def test_runner_list(cli: Cli) -> None:
    runners = {r["id"]: r for r in cli("--json", "runner", "list").ok().json_lines()}
    assert runners["1"]["name"] == "COMMAND"
    assert runners["2"]["name"] == "HTTP_REQUEST"
    assert runners["2"]["args_message"] == "HttpRequestArgs"
    table = cli("runner", "list").ok().stdout
    assert "COMMAND" in table and "HttpRequestRunnerSettings" in table


def test_http_request_example(cli: Cli, http_base_url: str) -> None:
    cli("worker", "create", "--name", "ExampleRequest", "--runner-id", "2",
        "--settings", f'{{"base_url":"{http_base_url}"}}', "--response-type", "DIRECT").ok()
    reply = cli("--json", "job", "enqueue", "--worker", "ExampleRequest", "--args", HTTP_ARGS).ok().json()
    result = reply["result"]
    assert result["status"] == "SUCCESS", result
    [output] = result["output"]  # decoded with the runner's result_output_proto (HttpRequestResult)
    assert output["status_code"] == 200
    assert output["content"] == "search results for test"
    assert _Recorder.requests == ["/search?q=test"]


def test_sleep_worker_listen_example_then_delete(cli: Cli) -> None:
    """The 60 s sleep of the README, listened to by two clients, cut short by `job delete`."""
    cli("worker", "create", "--name", "SleepWorker", "--runner-id", "1", "--settings", '{"name":"sleep"}',
        "--response-type", "LISTEN_AFTER", "--store-success", "--store-failure").ok()
    job_id = cli("--json", "job", "enqueue", "--worker", "SleepWorker", "--args", '{"args":["60"]}').ok().json()["id"]
    listeners = [cli.start("--json", "job-result", "listen", "--job-id", job_id, "--timeout", "70000",
                           "--worker", "SleepWorker") for _ in range(2)]
    _wait_for_status(cli, job_id, "RUNNING")
    assert cli("--json", "job", "delete", "--id", job_id).ok().json() == {"is_success": True}
    results = [finish(p, timeout=30).ok().json() for p in listeners]
    for result in results:
        assert result["job_id"] == job_id
        assert result["status"] == "CANCELLED"
        assert result["args"] == {"args": ["60"]}
    assert results[0]["id"] == results[1]["id"]


def _wait_for_status(cli: Cli, job_id: str, wanted: str, within_s: float = 20.0) -> None:
    """Poll job-status: the server has no event for "a job started running"."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        found = cli("--json", "job-status", "find", "-i", job_id)
        if found.returncode == 0 and found.json()["status"] == wanted:
            return
    raise AssertionError(f"job {job_id} never reached {wanted}")


def _periodic_worker(cli: Cli, name: str) -> None:
    cli("worker", "create", "--name", name, "--runner-id", "1", "--settings", '{"name":"echo"}',
        "--periodic", "3000", "--response-type", "NO_RESULT", "--store-success", "--store-failure").ok()


def test_periodic_echo_example(cli: Cli) -> None:
    """Runs 3 s apart, phase-aligned to run_after_time (1000 = one second from now), stopped by `job delete`."""
    _periodic_worker(cli, "PeriodicEchoWorker")
    stream = LineReader(cli.start("--json", "job-result", "listen-stream", "--worker", "PeriodicEchoWorker"))
    try:
        before_ms = int(time.time() * 1000)
        enqueued = cli("--json", "job", "enqueue", "--worker", "PeriodicEchoWorker",
                       "--args", '{"args":["Hello", "World", "!"]}', "--run-after-time", "1000")
        after_ms = int(time.time() * 1000)
        job_id = enqueued.ok().json()["id"]
        seen = [r for r in (stream.next_json(timeout=15) for _ in range(2)) if r is not None]
        assert len(seen) == 2, "the periodic job did not run twice"
    finally:
        stream.stop()
    results = sorted(cli("--json", "job-result", "list-by-job-id", "--job-id", job_id).ok().json_lines(),
                     key=lambda r: r["run_after_time"])
    assert len(results) >= 2
    first = results[0]
    assert before_ms + 1000 <= first["run_after_time"] <= after_ms + 1000
    for earlier, later in zip(results, results[1:], strict=False):
        # Same phase, no drift: due on the 3 s grid (a run late by a whole period skips a point).
        gap = later["run_after_time"] - earlier["run_after_time"]
        assert gap > 0 and gap % 3000 == 0, gap
        assert later["start_time"] > earlier["start_time"]
    for r in results:
        assert r["status"] == "SUCCESS" and r["output"] == ["Hello World !\n"]
        assert r["start_time"] >= r["run_after_time"]
    assert cli("--json", "job", "delete", "--id", job_id).ok().json() == {"is_success": True}
    assert cli("job", "find", "--id", job_id).returncode == 1


def test_periodic_enqueue_answers_with_a_job_id_or_one_clear_unimplemented_line(cli: Cli) -> None:
    _periodic_worker(cli, "PeriodicEchoWorkerToday")
    enqueued = cli("--json", "job", "enqueue", "--worker", "PeriodicEchoWorkerToday",
                   "--args", '{"args":["Hello", "World", "!"]}', "--run-after-time", "1000")
    if enqueued.returncode == 0:
        job_id = enqueued.json()["id"]
        assert int(job_id) > 0
        cli("job", "delete", "--id", job_id).ok()
    else:
        assert enqueued.stdout == ""
        assert len(enqueued.stderr.strip().splitlines()) == 1, enqueued.stderr
        assert "UNIMPLEMENTED" in enqueued.stderr
