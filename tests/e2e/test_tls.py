"""TLS on the gRPC listener (GRPC_TLS_CERT/KEY) and mutual TLS (GRPC_TLS_CLIENT_CA), against a
real server, with a grpclib client and with the CLI.

Every call that must fail carries a deadline, but only as a guard against a hang: a refused
connection must fail by itself (a timeout is reported as its own failure, never as a pass)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, run
from tests.certs import Pki, make_pki
from tests.cli.conftest import run_cli

pytestmark = pytest.mark.timeout(120)

HANG_GUARD_S = 30.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"GRPC_TLS_CERT": str(pki.server_cert), "GRPC_TLS_KEY": str(pki.server_key)}
    proc = ServerProcess(tmp_path_factory.mktemp("tls"), env).start()
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def mtls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"GRPC_TLS_CERT": str(pki.server_cert), "GRPC_TLS_KEY": str(pki.server_key),
           "GRPC_TLS_CLIENT_CA": str(pki.ca_cert)}
    proc = ServerProcess(tmp_path_factory.mktemp("mtls"), env).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


async def worker_count(port: int, context: ssl.SSLContext | None) -> int:
    async with connect(port, context) as c:
        return (await c.worker.count(svc.CountCondition(), timeout=HANG_GUARD_S)).total


def call_fails(port: int, context: ssl.SSLContext | None) -> BaseException:
    """The exception a call raised; fails the test if the call succeeded or hit the guard."""
    try:
        run(worker_count(port, context), timeout=HANG_GUARD_S + 10)
    except TimeoutError as e:
        raise AssertionError("the call hung until the guard instead of being refused") from e
    except Exception as e:  # noqa: BLE001 - any refusal will do, the test checks it is not a hang
        return e
    raise AssertionError("the call succeeded")


def test_tls_client_trusting_the_ca_is_answered(tls_server: ServerProcess, pki: Pki) -> None:
    assert run(worker_count(tls_server.port, client_context(pki.ca_cert))) >= 0
    assert "(TLS)" in tls_server.log()


def test_plaintext_client_is_refused_on_the_tls_port(tls_server: ServerProcess) -> None:
    error = call_fails(tls_server.port, None)
    assert "DEADLINE" not in str(error)


def test_client_trusting_another_ca_is_refused(tls_server: ServerProcess, pki: Pki) -> None:
    error = call_fails(tls_server.port, client_context(pki.other_ca_cert))
    assert isinstance(error, ssl.SSLCertVerificationError), repr(error)


def test_cli_over_https_with_ca_cert(tls_server: ServerProcess, pki: Pki) -> None:
    address = f"https://127.0.0.1:{tls_server.port}"
    assert run_cli(address, "--json", "--ca-cert", str(pki.ca_cert), "runner", "count").ok().json()["total"] >= 4
    # Without the private CA the system store does not know the server: one clear line, exit 3.
    untrusted = run_cli(address, "--timeout", str(int(HANG_GUARD_S * 1000)), "runner", "count")
    assert untrusted.returncode == 3, untrusted.stderr
    assert "TLS" in untrusted.stderr and "certificate verify failed" in untrusted.stderr
    plaintext = run_cli(f"http://127.0.0.1:{tls_server.port}", "--timeout", str(int(HANG_GUARD_S * 1000)),
                        "runner", "count")
    assert plaintext.returncode != 0 and "DEADLINE_EXCEEDED" not in plaintext.stderr, plaintext.stderr


def test_cli_refuses_tls_options_with_a_plaintext_address(pki: Pki) -> None:
    refused = run_cli("http://127.0.0.1:1", "--ca-cert", str(pki.ca_cert), "runner", "count")
    assert refused.returncode == 2 and "--ca-cert needs an https:// address" in refused.stderr


def test_mtls_refuses_a_client_without_certificate(mtls_server: ServerProcess, pki: Pki) -> None:
    call_fails(mtls_server.port, client_context(pki.ca_cert))
    cli = run_cli(f"https://127.0.0.1:{mtls_server.port}", "--ca-cert", str(pki.ca_cert),
                  "--timeout", str(int(HANG_GUARD_S * 1000)), "runner", "count")
    assert cli.returncode == 3 and "DEADLINE_EXCEEDED" not in cli.stderr, cli.stderr


def test_mtls_accepts_a_client_certificate_signed_by_the_client_ca(mtls_server: ServerProcess, pki: Pki) -> None:
    context = client_context(pki.ca_cert, pki.client_cert, pki.client_key)
    assert run(worker_count(mtls_server.port, context)) >= 0
    cli = run_cli(f"https://127.0.0.1:{mtls_server.port}", "--json", "--ca-cert", str(pki.ca_cert),
                  "--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key), "runner", "count")
    assert cli.ok().json()["total"] >= 4
