"""grpc-web with GRPC_TLS_CERT/KEY set: served over TLS with the gRPC listener's certificate
(ALPN http/1.1), and not in plaintext."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest
from grpclib.const import Status

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, free_port
from tests.certs import Pki, make_pki
from tests.e2e.grpc_web_client import HANG_GUARD_S, call

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_web(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    web_port = free_port()
    env = {"GRPC_TLS_CERT": str(pki.server_cert), "GRPC_TLS_KEY": str(pki.server_key), "USE_GRPC_WEB": "true",
           "GRPC_WEB_ADDR": f"127.0.0.1:{web_port}"}
    proc = ServerProcess(tmp_path_factory.mktemp("tls-web"), env).start()
    yield proc, web_port
    assert proc.stop() == 0, proc.log()


def test_grpc_web_is_served_over_tls(tls_web: tuple[ServerProcess, int], pki: Pki) -> None:
    server, web_port = tls_web
    with httpx.Client(verify=ssl.create_default_context(cafile=str(pki.ca_cert))) as client:
        answer = call(client, web_port, "jobworkerp.service.RunnerService/FindList", bytes(svc.FindListRequest()),
                      scheme="https")
    assert answer.grpc_status == Status.OK.value, answer.grpc_message
    assert "COMMAND" in [data.Runner.parse(m).data.name for m in answer.messages]
    assert f"grpc-web listening on 127.0.0.1:{web_port} (TLS)" in server.log()


def test_plaintext_is_not_answered_on_the_tls_port(tls_web: tuple[ServerProcess, int], pki: Pki) -> None:
    server, web_port = tls_web
    with httpx.Client() as client, pytest.raises(httpx.TransportError):
        client.post(f"http://127.0.0.1:{web_port}/jobworkerp.service.RunnerService/Count", content=b"",
                    headers={"content-type": "application/grpc-web"}, timeout=HANG_GUARD_S)
    with httpx.Client(verify=ssl.create_default_context(cafile=str(pki.ca_cert))) as client:
        answer = call(client, web_port, "jobworkerp.service.RunnerService/Count", bytes(svc.CountCondition()),
                      scheme="https")
    assert answer.grpc_status == Status.OK.value
