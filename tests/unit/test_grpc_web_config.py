"""USE_GRPC_WEB and its settings (config.py): defaults, refusals naming the variable, and the
exposure rule applied to the grpc-web listener."""

from __future__ import annotations

import pytest

from jobworkerp.config import ConfigError, check_grpc_exposure, load_config

pytestmark = pytest.mark.timeout(10)


def test_off_by_default_and_next_to_grpc_when_on() -> None:
    assert not load_config({}).use_grpc_web
    config = load_config({"USE_GRPC_WEB": "true", "GRPC_ADDR": "127.0.0.1:9200"})
    assert config.use_grpc_web and config.grpc_web_address == "127.0.0.1:9201"
    assert (config.grpc_web_host, config.grpc_web_port) == ("127.0.0.1", 9201)
    assert config.grpc_web_cors_origins == ()
    assert load_config({"USE_GRPC_WEB": "1", "GRPC_ADDR": "[::1]:0"}).grpc_web_address == "[::1]:0"
    given = load_config({"USE_GRPC_WEB": "yes", "GRPC_WEB_ADDR": "127.0.0.1:8080",
                         "GRPC_WEB_CORS_ORIGINS": "https://Dash.example.com, http://localhost:3000/"})
    assert given.grpc_web_address == "127.0.0.1:8080"
    assert given.grpc_web_cors_origins == ("https://dash.example.com", "http://localhost:3000")
    assert load_config({"USE_GRPC_WEB": "true", "GRPC_WEB_CORS_ORIGINS": "*"}).grpc_web_cors_origins == ("*",)


@pytest.mark.parametrize(("env", "variable", "names"), [
    ({"USE_GRPC_WEB": "maybe"}, "USE_GRPC_WEB", "true or false"),
    ({"GRPC_WEB_ADDR": "127.0.0.1:9001"}, "GRPC_WEB_ADDR", "USE_GRPC_WEB=true"),
    ({"GRPC_WEB_CORS_ORIGINS": "*"}, "GRPC_WEB_CORS_ORIGINS", "USE_GRPC_WEB=true"),
    ({"USE_GRPC_WEB": "true", "GRPC_WEB_ADDR": "9001"}, "GRPC_WEB_ADDR", "HOST:PORT"),
    ({"USE_GRPC_WEB": "true", "GRPC_WEB_ADDR": "127.0.0.1:9000"}, "GRPC_WEB_ADDR", "must differ from GRPC_ADDR"),
    ({"USE_GRPC_WEB": "true", "GRPC_ADDR": "127.0.0.1:65535"}, "GRPC_WEB_ADDR", "set GRPC_WEB_ADDR"),
    ({"USE_GRPC_WEB": "true", "GRPC_WEB_CORS_ORIGINS": "dash.example.com"}, "GRPC_WEB_CORS_ORIGINS", "expected *"),
    ({"USE_GRPC_WEB": "true", "GRPC_WEB_CORS_ORIGINS": "https://a.example/app"}, "GRPC_WEB_CORS_ORIGINS",
     "expected *"),
    ({"USE_GRPC_WEB": "true", "GRPC_WEB_CORS_ORIGINS": "https://a.example:x"}, "GRPC_WEB_CORS_ORIGINS",
     "expected *"),
    ({"USE_GRPC_WEB": "true", "GRPC_WEB_CORS_ORIGINS": ","}, "GRPC_WEB_CORS_ORIGINS", "lists nothing"),
])
def test_bad_settings_are_refused_naming_the_variable(env: dict[str, str], variable: str, names: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env)
    assert info.value.variable == variable and names in str(info.value)


def test_an_exposed_grpc_web_listener_needs_tls_or_a_token() -> None:
    exposed = {"USE_GRPC_WEB": "true", "GRPC_WEB_ADDR": "0.0.0.0:9001"}
    with pytest.raises(ConfigError) as info:
        check_grpc_exposure(load_config(exposed))
    assert info.value.variable == "GRPC_WEB_ADDR"
    warning = check_grpc_exposure(load_config({**exposed, "AUTH_TOKEN": "t"}))
    assert warning is not None and "GRPC_WEB_ADDR 0.0.0.0:9001" in warning and "plaintext" in warning
    assert check_grpc_exposure(load_config({"USE_GRPC_WEB": "true"})) is None
