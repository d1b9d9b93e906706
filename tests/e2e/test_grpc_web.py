"""grpc-web (USE_GRPC_WEB) against a real server: httpx requests framed by hand
(tests/e2e/grpc_web_client.py) on GRPC_WEB_ADDR, next to the gRPC port.

The server has AUTH_TOKEN set, so every call carries it; the token tests make two failed
attempts, far from the 10 after which the address is refused for a minute (front/auth.py). No time
bounds: waits are for a signal from the server or its job, with a guard only against a hang."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from grpclib.const import Status
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, free_port, run
from tests.e2e.grpc_web_client import BINARY, HANG_GUARD_S, WebAnswer, call, frame, parse
from tests.e2e.test_auth_and_shutdown import wait_until
from tests.procs import process_gone

pytestmark = pytest.mark.timeout(180)

TOKEN = "web-s3cret"
AUTH = {"jobworkerp-auth": TOKEN}
ORIGIN = "https://dash.example.com"
MAX_MESSAGE = 65536


class WebServer(ServerProcess):
    web_port: int


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    web_port = free_port()
    proc = WebServer(tmp_path_factory.mktemp("grpc-web"), {
        "USE_GRPC_WEB": "true", "GRPC_WEB_ADDR": f"127.0.0.1:{web_port}", "AUTH_TOKEN": TOKEN,
        "GRPC_WEB_CORS_ORIGINS": ORIGIN, "GRPC_MAX_MESSAGE_BYTES": str(MAX_MESSAGE)})
    proc.web_port = web_port
    proc.start()
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:  # one kept-alive connection for the calls of a test
        yield c


def web(client: httpx.Client, server: WebServer, method: str, message: bytes = b"", **kwargs) -> WebAnswer:
    kwargs.setdefault("headers", AUTH)
    return call(client, server.web_port, method, message, **kwargs)




def grpc_runner_names(server: WebServer) -> list[str]:
    async def scenario() -> list[str]:
        async with connect(server.port) as c:
            return [r.data.name async for r in c.runner.find_list(svc.FindListRequest(), metadata=AUTH)]

    return run(scenario())


# --- the calls -----------------------------------------------------------------------------
@pytest.mark.parametrize("text", [False, True], ids=["binary", "text"])
def test_runner_find_list_streams_the_runners(server: WebServer, client: httpx.Client, text: bool) -> None:
    answer = web(client, server, "jobworkerp.service.RunnerService/FindList", bytes(svc.FindListRequest()),
                 text=text)
    assert answer.http_status == 200
    assert answer.headers["content-type"].startswith("application/grpc-web-text" if text else BINARY)
    assert answer.grpc_status == Status.OK.value, answer.grpc_message
    names = [data.Runner.parse(m).data.name for m in answer.messages]
    assert {"COMMAND", "HTTP_REQUEST", "GRPC_UNARY", "DOCKER"} <= set(names)
    assert names == grpc_runner_names(server)  # the gRPC port, still serving, answers the same


def test_unary_create_and_direct_enqueue_run_a_command(server: WebServer, client: httpx.Client) -> None:
    worker = data.WorkerData(name="web-echo", runner_id=data.RunnerId(value=1),
                             runner_settings=bytes(runner_pb.CommandRunnerSettings(name="echo")),
                             response_type=data.ResponseType.DIRECT)
    created = web(client, server, "jobworkerp.service.WorkerService/Create", bytes(worker))
    assert created.grpc_status == Status.OK.value, created.grpc_message
    assert created.headers["content-length"]  # a unary answer is one write, not chunked
    worker_id = svc.CreateWorkerResponse.parse(created.messages[0]).id
    request = svc.JobRequest(worker_id=worker_id, args=bytes(runner_pb.CommandArgs(args=["hello", "web"])))
    for text in (False, True):
        answer = web(client, server, "jobworkerp.service.JobService/Enqueue", bytes(request), text=text)
        assert answer.grpc_status == Status.OK.value, answer.grpc_message
        [message] = answer.messages
        result = svc.CreateJobResponse.parse(message).result
        assert result.data.status == data.ResultStatus.SUCCESS
        assert result.data.output.items == [b"hello web\n"]


def test_health_needs_no_token(server: WebServer, client: httpx.Client) -> None:
    answer = web(client, server, "grpc.health.v1.Health/Check", HealthCheckRequest().SerializeToString(),
                 headers={})
    assert answer.grpc_status == Status.OK.value
    assert HealthCheckResponse.FromString(answer.messages[0]).status == HealthCheckResponse.SERVING


def test_a_server_stream_delivers_each_message_as_it_comes(server: WebServer, client: httpx.Client) -> None:
    """ListenStreamByWorker never ends by itself: its results must reach the client one by one."""
    worker = data.WorkerData(name="web-streamed", runner_id=data.RunnerId(value=1),
                             runner_settings=bytes(runner_pb.CommandRunnerSettings(name="echo")),
                             response_type=data.ResponseType.NO_RESULT)
    assert web(client, server, "jobworkerp.service.WorkerService/Create", bytes(worker)).grpc_status == 0
    listening = threading.Event()

    def enqueue_until_heard() -> None:  # the subscription is live once a job's result comes through
        with httpx.Client() as other:
            request = bytes(svc.JobRequest(worker_name="web-streamed", args=bytes(runner_pb.CommandArgs(args=["hi"]))))
            while not listening.wait(0.1):
                web(other, server, "jobworkerp.service.JobService/Enqueue", request)

    prober = threading.Thread(target=enqueue_until_heard)
    request = frame(bytes(svc.ListenStreamByWorkerRequest(worker_name="web-streamed")))
    received = b""
    try:
        with client.stream("POST", f"http://127.0.0.1:{server.web_port}/jobworkerp.service.JobResultService/"
                           "ListenStreamByWorker", content=request, timeout=HANG_GUARD_S,
                           headers={"content-type": BINARY, **AUTH}) as response:
            assert response.status_code == 200
            prober.start()
            for chunk in response.iter_raw():
                received += chunk
                if len(received) >= 5 and len(received) >= 5 + struct.unpack(">I", received[1:5])[0]:
                    break
    finally:
        listening.set()
        if prober.is_alive():
            prober.join()
    assert received[0] == 0  # a message, not the trailer frame: the stream is still open
    result = data.JobResult.parse(received[5:5 + struct.unpack(">I", received[1:5])[0]])
    assert result.data.worker_name == "web-streamed"
    assert result.data.output.items == [b"hi\n"]
    # the stream was left by hanging up; the server goes on
    assert web(client, server, "jobworkerp.service.RunnerService/Count", bytes(svc.CountCondition())).grpc_status == 0


# --- CORS ----------------------------------------------------------------------------------
def test_preflight_of_a_listed_origin_allows_the_call(server: WebServer, client: httpx.Client) -> None:
    response = client.options(
        f"http://127.0.0.1:{server.web_port}/jobworkerp.service.RunnerService/FindList",
        headers={"origin": ORIGIN, "access-control-request-method": "POST",
                 "access-control-request-headers": "content-type,x-grpc-web,x-user-agent,jobworkerp-auth"})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-grpc-web", "jobworkerp-auth"} <= allowed
    answer = web(client, server, "jobworkerp.service.RunnerService/Count", bytes(svc.CountCondition()),
                 headers={**AUTH, "origin": ORIGIN})
    assert answer.grpc_status == Status.OK.value
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    exposed = {h.strip() for h in answer.headers["access-control-expose-headers"].split(",")}
    assert {"grpc-status", "grpc-message"} <= exposed


def test_an_unlisted_origin_is_refused(server: WebServer, client: httpx.Client) -> None:
    url = f"http://127.0.0.1:{server.web_port}/jobworkerp.service.RunnerService/Count"
    preflight = client.options(url, headers={"origin": "https://evil.example", "access-control-request-method": "POST"})
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    post = client.post(url, content=frame(b""), headers={"content-type": BINARY, "origin": "https://evil.example",
                                                         **AUTH})
    assert post.status_code == 403
    assert "GRPC_WEB_CORS_ORIGINS" in post.text


# --- refusals ------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "web-s3creT"], ids=["missing", "wrong"])
def test_a_missing_or_wrong_token_is_unauthenticated(server: WebServer, client: httpx.Client,
                                                     token: str | None) -> None:
    answer = web(client, server, "jobworkerp.service.RunnerService/FindList", bytes(svc.FindListRequest()),
                 headers={} if token is None else {"jobworkerp-auth": token})
    assert answer.http_status == 200
    assert answer.grpc_status == Status.UNAUTHENTICATED.value
    assert "jobworkerp-auth" in answer.grpc_message
    assert answer.messages == []
    assert TOKEN[:8] not in server.log()


@pytest.mark.parametrize(("body", "text", "status", "names"), [
    (frame(b"\xff\xff\xff"), False, Status.INVALID_ARGUMENT, "jobworkerp.service.JobRequest"),
    (b"\x00\x00\x00\x00\x09abc", False, Status.INVALID_ARGUMENT, "readable gRPC message frame"),
    (b"\x00\x00", False, Status.INVALID_ARGUMENT, "readable gRPC message frame"),
    (b"", False, Status.INVALID_ARGUMENT, "no jobworkerp.service.JobRequest message"),
    (frame(b"") + frame(b""), False, Status.INVALID_ARGUMENT, "more than one message"),
    (frame(b"", flag=1), False, Status.INVALID_ARGUMENT, "compressed"),
    (frame(b"\xff\xff\xff"), True, Status.INVALID_ARGUMENT, "jobworkerp.service.JobRequest"),
    (b"\x00\x00\x10\x00\x00", False, Status.RESOURCE_EXHAUSTED, "GRPC_MAX_MESSAGE_BYTES"),
    (frame(b"x" * (MAX_MESSAGE + 1)), True, Status.RESOURCE_EXHAUSTED, "GRPC_MAX_MESSAGE_BYTES"),
], ids=["garbage", "short-body", "short-prefix", "empty", "two-messages", "compressed", "text-garbage",
        "declared-too-long", "sent-too-long"])
def test_a_bad_request_gets_a_grpc_status_naming_the_problem(server: WebServer, client: httpx.Client, body: bytes,
                                                             text: bool, status: Status, names: str) -> None:
    answer = web(client, server, "jobworkerp.service.JobService/Enqueue", body=body, text=text)
    assert answer.http_status == 200
    assert answer.grpc_status == status.value, answer.grpc_message
    assert names in answer.grpc_message
    # the connection and the server go on
    assert web(client, server, "jobworkerp.service.RunnerService/Count", bytes(svc.CountCondition())).grpc_status == 0


def test_text_that_is_not_base64_is_invalid_argument(server: WebServer, client: httpx.Client) -> None:
    response = client.post(f"http://127.0.0.1:{server.web_port}/jobworkerp.service.RunnerService/Count",
                           content=b"!!not base64!!", headers={"content-type": "application/grpc-web-text", **AUTH})
    answer = parse(response)
    assert answer.grpc_status == Status.INVALID_ARGUMENT.value
    assert "base64" in answer.grpc_message


@pytest.mark.parametrize(("method", "headers", "status", "names"), [
    ("jobworkerp.service.NoSuchService/Find", {}, Status.UNIMPLEMENTED, "NoSuchService/Find"),
    ("grpc.reflection.v1.ServerReflection/ServerReflectionInfo", {}, Status.UNIMPLEMENTED, "client-streaming"),
    ("jobworkerp.service.RunnerService/Count", {"grpc-timeout": "soon"}, Status.INVALID_ARGUMENT, "grpc-timeout"),
])
def test_what_grpc_web_cannot_call_is_named(server: WebServer, client: httpx.Client, method: str,
                                            headers: dict[str, str], status: Status, names: str) -> None:
    answer = web(client, server, method, b"", headers={**AUTH, **headers})
    assert answer.grpc_status == status.value
    assert names in answer.grpc_message


def test_http_that_is_not_grpc_web_gets_an_http_status(server: WebServer, client: httpx.Client) -> None:
    url = f"http://127.0.0.1:{server.web_port}/jobworkerp.service.RunnerService/Count"
    assert client.get(url).status_code == 405
    assert client.post(url, content=b"{}", headers={"content-type": "application/json"}).status_code == 415
    with socket.create_connection(("127.0.0.1", server.web_port), timeout=HANG_GUARD_S) as raw:
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 400")
    assert web(client, server, "jobworkerp.service.RunnerService/Count", bytes(svc.CountCondition())).grpc_status == 0


# --- a call that ends early ----------------------------------------------------------------
def sleeper(client: httpx.Client, server: WebServer, name: str, marker: Path) -> svc.JobRequest:
    """A DIRECT job that writes its pid to `marker` and sleeps."""
    worker = data.WorkerData(name=name, runner_id=data.RunnerId(value=1),
                             runner_settings=bytes(runner_pb.CommandRunnerSettings(name="sh")),
                             response_type=data.ResponseType.DIRECT)
    created = web(client, server, "jobworkerp.service.WorkerService/Create", bytes(worker))
    assert created.grpc_status == 0, created.grpc_message
    args = ["-c", f"echo $$ > {marker}.tmp && mv {marker}.tmp {marker} && exec sleep 600"]
    return svc.JobRequest(worker_id=svc.CreateWorkerResponse.parse(created.messages[0]).id,
                          args=bytes(runner_pb.CommandArgs(args=args)))


gone = process_gone


def test_a_client_that_hangs_up_cancels_its_direct_job(server: WebServer, client: httpx.Client,
                                                        tmp_path: Path) -> None:
    marker = tmp_path / "job.pid"
    request = bytes(sleeper(client, server, "web-hang-up", marker))
    body = frame(request)
    with socket.create_connection(("127.0.0.1", server.web_port), timeout=HANG_GUARD_S) as raw:
        raw.sendall(b"POST /jobworkerp.service.JobService/Enqueue HTTP/1.1\r\nhost: x\r\n"
                    b"content-type: application/grpc-web+proto\r\njobworkerp-auth: " + TOKEN.encode() +
                    b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        wait_until(marker.exists, "the job to start")
    pid = int(marker.read_text())
    wait_until(lambda: gone(pid), "the job's command to be killed once its caller hung up")


def test_grpc_timeout_ends_the_call_with_deadline_exceeded(server: WebServer, client: httpx.Client,
                                                           tmp_path: Path) -> None:
    marker = tmp_path / "job.pid"
    request = sleeper(client, server, "web-deadline", marker)
    answer = web(client, server, "jobworkerp.service.JobService/Enqueue", bytes(request),
                 headers={**AUTH, "grpc-timeout": "2S"})
    assert answer.grpc_status == Status.DEADLINE_EXCEEDED.value
    assert "grpc-timeout" in answer.grpc_message
    if marker.exists():  # the job may or may not have started in two seconds on a slow machine
        pid = int(marker.read_text())
        wait_until(lambda: gone(pid), "the job's command to be killed once the deadline passed")


def test_a_stop_ends_open_streams_with_unavailable_and_the_server_exits_0(tmp_path: Path) -> None:
    web_port = free_port()
    server = ServerProcess(tmp_path, {"USE_GRPC_WEB": "true", "GRPC_WEB_ADDR": f"127.0.0.1:{web_port}"}).start()
    worker = data.WorkerData(name="quiet", runner_id=data.RunnerId(value=1),
                             runner_settings=bytes(runner_pb.CommandRunnerSettings(name="echo")))
    try:
        with httpx.Client() as client:
            created = call(client, web_port, "jobworkerp.service.WorkerService/Create", bytes(worker))
            assert created.grpc_status == 0, created.grpc_message
        with httpx.Client() as client, client.stream(
                "POST", f"http://127.0.0.1:{web_port}/jobworkerp.service.JobResultService/ListenStreamByWorker",
                content=frame(bytes(svc.ListenStreamByWorkerRequest(worker_name="quiet"))),
                headers={"content-type": BINARY}, timeout=HANG_GUARD_S) as response:
            assert response.status_code == 200  # the stream is open
            server.terminate()
            response.read()
            answer = parse(response)
    finally:
        assert server.stop() == 0, server.log()
    assert answer.messages == []
    assert answer.grpc_status == Status.UNAVAILABLE.value
    assert "stopped" in answer.grpc_message
