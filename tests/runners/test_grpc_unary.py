"""GRPC_UNARY runner called directly against a real server: raw bytes in and out, status mapping."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.proto.jobworkerp.data import ResultStatus
from jobworkerp.proto.jobworkerp.runner import GrpcUnaryRunnerSettings
from jobworkerp.runners.base import FatalError, OtherError, RetryableError, RunnerLoadError
from jobworkerp.runners.grpc_unary import GrpcUnaryRunner, normalize_path, parse_target
from jobworkerp.testing.server import ServerProcess

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("grpc-target"), {"WORKER_DEFAULT_CONCURRENCY": "1"}).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def runner(url: str, path: str) -> GrpcUnaryRunner:
    r = GrpcUnaryRunner()
    r.load(bytes(GrpcUnaryRunnerSettings(url=url, path=path)))
    return r


def test_count_returns_the_raw_encoded_response(server: ServerProcess) -> None:
    r = runner(f"http://127.0.0.1:{server.port}", "jobworkerp.service.RunnerService/Count")
    items = r.run(bytes(svc.CountCondition()))
    assert len(items) == 1
    assert svc.CountResponse.parse(items[0]).total >= 4  # the built-in runners


def test_static_runner_reuses_its_connection(server: ServerProcess) -> None:
    r = runner(f"http://127.0.0.1:{server.port}", "/jobworkerp.service.RunnerService/Count")
    first = r.run(b"")
    r.cancel()
    assert r.run(b"") == first
    assert len(r._channel_box) == 1


def test_unknown_method_is_fatal_with_the_status(server: ServerProcess) -> None:
    r = runner(f"http://127.0.0.1:{server.port}", "jobworkerp.service.RunnerService/NoSuchMethod")
    with pytest.raises(FatalError, match="UNIMPLEMENTED") as info:
        r.run(b"")
    assert info.value.status == ResultStatus.FATAL_ERROR


def test_streaming_method_is_refused_with_a_clear_error(server: ServerProcess) -> None:
    r = runner(f"http://127.0.0.1:{server.port}", "jobworkerp.service.RunnerService/FindList")
    with pytest.raises(FatalError, match="streaming method"):
        r.run(bytes(svc.FindListRequest()))


def test_unreachable_target_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = runner(f"http://127.0.0.1:{port}", "x.Y/Z")
    with pytest.raises(RetryableError, match="UNAVAILABLE") as info:
        r.run(b"")
    assert info.value.status == ResultStatus.ERROR_AND_RETRY


@pytest.mark.parametrize(("url", "path"), [
    ("localhost:9000", "a.B/C"),  # no scheme
    ("http://localhost:9000/x", "a.B/C"),  # a path in the url
    ("http://localhost:9000", "NoMethod"),
    ("http://localhost:9000", ""),
])
def test_bad_settings_fail_at_load(url: str, path: str) -> None:
    with pytest.raises(RunnerLoadError):
        runner(url, path)


def test_target_and_path_parsing() -> None:
    assert parse_target("http://example.com") == ("example.com", 80, False)
    assert parse_target("https://example.com:8443/") == ("example.com", 8443, True)
    assert normalize_path("pkg.Svc/Method") == normalize_path("/pkg.Svc/Method") == "/pkg.Svc/Method"


def test_runner_is_closed_when_dropped(server: ServerProcess, recwarn: pytest.WarningsRecorder) -> None:
    r = runner(f"http://127.0.0.1:{server.port}", "jobworkerp.service.RunnerService/Count")
    r.run(b"")
    loop = r._loop
    del r
    assert loop is not None and loop.is_closed()
    assert not [w for w in recwarn if issubclass(w.category, ResourceWarning)]


def test_garbage_settings_are_a_load_error() -> None:
    with pytest.raises((RunnerLoadError, OtherError)):
        GrpcUnaryRunner().load(b"\x0a\xff")


