"""TLS settings: gRPC listener, Redis (rediss://) and MySQL reach what builds the connections.

Redis and MySQL TLS cannot be exercised end to end here without reconfiguring the machine's
servers, so these tests stop at the connection parameters -- except the MySQL downgrade guard,
which the local MariaDB (TLS disabled) exercises for real."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio

from jobworkerp.aio import open_redis
from jobworkerp.config import ConfigError, load_config
from jobworkerp.front.tls import server_ssl_context
from jobworkerp.storage.mysql_pool import MysqlParams, MysqlTls
from tests.certs import Pki, make_pki
from tests.storage.mysql_support import try_connect

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def config_error(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(env)
    return info.value


def test_grpc_cert_and_key_come_together(pki: Pki) -> None:
    assert config_error({"GRPC_TLS_CERT": str(pki.server_cert)}).variable == "GRPC_TLS_KEY"
    assert config_error({"GRPC_TLS_KEY": str(pki.server_key)}).variable == "GRPC_TLS_CERT"
    assert config_error({"GRPC_TLS_CLIENT_CA": str(pki.ca_cert)}).variable == "GRPC_TLS_CLIENT_CA"


def test_a_directory_is_not_a_readable_file(pki: Pki, tmp_path: Path) -> None:
    error = config_error({"GRPC_TLS_CERT": str(pki.server_cert), "GRPC_TLS_KEY": str(tmp_path)})
    assert error.variable == "GRPC_TLS_KEY"


def test_missing_file_names_its_variable(pki: Pki, tmp_path: Path) -> None:
    error = config_error({"GRPC_TLS_CERT": str(tmp_path / "nope.pem"), "GRPC_TLS_KEY": str(pki.server_key)})
    assert error.variable == "GRPC_TLS_CERT" and "nope.pem" in str(error)


def test_server_context_speaks_h2_over_tls12_or_later(pki: Pki) -> None:
    config = load_config({"GRPC_TLS_CERT": str(pki.server_cert), "GRPC_TLS_KEY": str(pki.server_key)})
    context = server_ssl_context(config)
    assert context is not None and config.grpc_tls
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE  # no client CA: clients are not asked for a certificate
    with_ca = load_config({"GRPC_TLS_CERT": str(pki.server_cert), "GRPC_TLS_KEY": str(pki.server_key),
                           "GRPC_TLS_CLIENT_CA": str(pki.ca_cert)})
    mtls = server_ssl_context(with_ca)
    assert mtls is not None and mtls.verify_mode == ssl.CERT_REQUIRED
    assert server_ssl_context(load_config({})) is None


def test_a_key_that_does_not_match_is_a_config_error(pki: Pki) -> None:
    config = load_config({"GRPC_TLS_CERT": str(pki.server_cert), "GRPC_TLS_KEY": str(pki.client_key)})
    with pytest.raises(ConfigError) as info:
        server_ssl_context(config)
    assert info.value.variable == "GRPC_TLS_CERT"


def test_a_client_ca_that_is_not_pem_is_a_config_error(pki: Pki) -> None:
    config = load_config({"GRPC_TLS_CERT": str(pki.server_cert), "GRPC_TLS_KEY": str(pki.server_key),
                          "GRPC_TLS_CLIENT_CA": str(pki.server_key)})
    with pytest.raises(ConfigError) as info:
        server_ssl_context(config)
    assert info.value.variable == "GRPC_TLS_CLIENT_CA"


def test_redis_tls_files_need_a_rediss_url(pki: Pki) -> None:
    error = config_error({"REDIS_TLS_CA_CERT": str(pki.ca_cert)})
    assert error.variable == "REDIS_TLS_CA_CERT" and "rediss://" in str(error)
    assert config_error({"REDIS_URL": "rediss://h:6380", "REDIS_TLS_CERT": str(pki.client_cert)}).variable \
        == "REDIS_TLS_KEY"


def test_rediss_url_and_tls_files_reach_the_connection_pool(pki: Pki) -> None:
    import redis.asyncio

    config = load_config({"REDIS_URL": "rediss://redis.example:6380/0", "REDIS_TLS_CA_CERT": str(pki.ca_cert),
                          "REDIS_TLS_CERT": str(pki.client_cert), "REDIS_TLS_KEY": str(pki.client_key)})
    client = open_redis(config.redis_url, tls_ca_cert=config.redis_tls_ca_cert, tls_cert=config.redis_tls_cert,
                        tls_key=config.redis_tls_key)
    pool = client.connection_pool
    assert pool.connection_class is redis.asyncio.SSLConnection
    connection = pool.connection_class(**pool.connection_kwargs)
    assert connection.ssl_context.ca_certs == str(pki.ca_cert)
    assert connection.ssl_context.certfile == str(pki.client_cert)
    assert connection.ssl_context.keyfile == str(pki.client_key)
    assert connection.ssl_context.cert_reqs == ssl.CERT_REQUIRED and connection.ssl_context.check_hostname
    plain = open_redis("redis://127.0.0.1:6379").connection_pool
    assert plain.connection_class is redis.asyncio.Connection


def test_mysql_settings_turn_tls_on_and_it_always_verifies(pki: Pki) -> None:
    assert MysqlTls.from_config(load_config({})) is None
    assert MysqlTls.from_config(load_config({"MYSQL_SSL": "true"})) == MysqlTls()
    config = load_config({"MYSQL_SSL_CA": str(pki.ca_cert), "MYSQL_SSL_CERT": str(pki.client_cert),
                          "MYSQL_SSL_KEY": str(pki.client_key), "MYSQL_SSL_VERIFY_IDENTITY": "false"})
    tls = MysqlTls.from_config(config)
    assert tls == MysqlTls(str(pki.ca_cert), str(pki.client_cert), str(pki.client_key), verify_identity=False)
    connection = MysqlParams(tls=tls).connection()
    assert connection.ssl and connection.ctx.verify_mode == ssl.CERT_REQUIRED
    assert not connection.ctx.check_hostname
    assert MysqlParams(tls=MysqlTls(str(pki.ca_cert))).connection().ctx.check_hostname
    assert not MysqlParams().connection().ssl
    assert config_error({"MYSQL_SSL_CERT": str(pki.client_cert)}).variable == "MYSQL_SSL_KEY"


def test_mysql_without_tls_is_refused_when_tls_is_asked_for(pki: Pki) -> None:
    """The local MariaDB runs with TLS disabled: a client that asked for TLS must not log in."""
    import trio_mysql

    async def attempt() -> None:
        await try_connect(MysqlParams(tls=MysqlTls(str(pki.ca_cert)), connect_timeout=5))

    with pytest.raises(trio_mysql.err.OperationalError, match="does not offer TLS"):
        trio.run(attempt)
