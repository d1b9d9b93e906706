"""Which GRPC_ADDR binds count as exposed, and what an exposed bind needs (TLS or a token)."""

from __future__ import annotations

import pytest

from jobworkerp.app import check_mode
from jobworkerp.config import ConfigError, check_grpc_exposure, is_loopback_host, load_config

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST",
                                  "::ffff:127.0.0.1"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "10.0.0.5", "192.168.1.1", "::ffff:10.0.0.1",
                                  "example.com", "localhost.example.com", "128.0.0.1"])
def test_non_loopback_hosts(host: str) -> None:
    assert not is_loopback_host(host)


@pytest.mark.parametrize("addr", ["0.0.0.0:0", "[::]:9000", "10.0.0.5:9000", "myhost:9000"])
def test_exposed_bind_without_tls_or_token_is_refused_naming_grpc_addr(addr: str) -> None:
    config = load_config({"GRPC_ADDR": addr})
    with pytest.raises(ConfigError) as info:
        check_grpc_exposure(config)
    assert info.value.variable == "GRPC_ADDR" and "ALLOW_INSECURE_BIND" in str(info.value)
    with pytest.raises(ConfigError):
        check_mode(config, "all-in-one")


def test_loopback_bind_needs_nothing_and_warns_nothing() -> None:
    assert check_grpc_exposure(load_config({})) is None
    assert check_grpc_exposure(load_config({"GRPC_ADDR": "[::1]:9000"})) is None


def test_exposed_bind_with_a_token_but_no_tls_starts_with_a_plaintext_warning() -> None:
    warning = check_grpc_exposure(load_config({"GRPC_ADDR": "0.0.0.0:9000", "AUTH_TOKEN": "t"}))
    assert warning is not None and "plaintext" in warning and "GRPC_ADDR" in warning


def test_allow_insecure_bind_starts_with_a_warning() -> None:
    warning = check_grpc_exposure(load_config({"GRPC_ADDR": "0.0.0.0:9000", "ALLOW_INSECURE_BIND": "true"}))
    assert warning is not None and "ALLOW_INSECURE_BIND" in warning


def test_exposed_bind_with_tls_is_quiet(tmp_path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    config = load_config({"GRPC_ADDR": "0.0.0.0:9000", "GRPC_TLS_CERT": str(cert), "GRPC_TLS_KEY": str(key)})
    assert check_grpc_exposure(config) is None


def test_a_worker_does_not_listen_so_its_grpc_addr_is_not_checked() -> None:
    check_mode(load_config({"GRPC_ADDR": "0.0.0.0:9000", "STORAGE_TYPE": "Scalable"}), "worker")


def test_metrics_need_a_port_of_their_own_where_grpc_listens() -> None:
    env = {"GRPC_ADDR": "127.0.0.1:9000", "METRICS_ADDR": "127.0.0.1:9000"}
    with pytest.raises(ConfigError) as info:
        check_mode(load_config(env), "all-in-one")
    assert info.value.variable == "METRICS_ADDR" and "GRPC_ADDR" in str(info.value)
    with pytest.raises(ConfigError, match="GRPC_WEB_ADDR"):
        check_mode(load_config({"USE_GRPC_WEB": "true", "METRICS_ADDR": "127.0.0.1:9001"}), "all-in-one")
    check_mode(load_config({**env, "STORAGE_TYPE": "Scalable"}), "worker")  # a worker does not listen on it
