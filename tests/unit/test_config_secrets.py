"""Settings that matter once the server is reachable beyond localhost: a blank AUTH_TOKEN is an
error (not "no auth"), secrets stay out of reprs, and SHUTDOWN_GRACE_MS is read."""

from __future__ import annotations

import pytest

from jobworkerp.config import ConfigError, load_config, redact_url

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_a_blank_auth_token_is_an_error_naming_it(blank: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"AUTH_TOKEN": blank})
    assert info.value.variable == "AUTH_TOKEN"


def test_an_unset_auth_token_means_no_auth_and_a_set_one_is_kept() -> None:
    assert load_config({}).auth_token is None
    assert load_config({"AUTH_TOKEN": " tok "}).auth_token == "tok"


def test_a_blank_auth_token_in_the_dotenv_file_is_an_error(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("AUTH_TOKEN", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("AUTH_TOKEN=\n")
    with pytest.raises(ConfigError, match="AUTH_TOKEN"):
        load_config(dotenv_path=str(env_file))


def test_repr_shows_no_secret() -> None:
    config = load_config({"AUTH_TOKEN": "tok-123456", "MYSQL_PASSWORD": "mysql-pw-7", "REDIS_PASSWORD": "redis-pw-8",
                          "REDIS_URL": "redis://user:url-pw-9@redis.example:6380/2"})
    shown = repr(config)
    for secret in ("tok-123456", "mysql-pw-7", "redis-pw-8", "url-pw-9"):
        assert secret not in shown
        assert secret not in str(config)
    assert "redis://user:<redacted>@redis.example:6380/2" in shown  # the rest of the URL still helps
    assert "auth_token='<redacted>'" in shown and "mysql_dbname='jobworkerp'" in shown
    assert "auth_token=None" in repr(load_config({}))  # unset stays visible as unset


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
    ("redis://:pw@127.0.0.1:6379/0", "redis://:<redacted>@127.0.0.1:6379/0"),
    ("rediss://u:pw@[::1]:6379", "rediss://u:<redacted>@[::1]:6379"),
    ("redis://u:pw@host", "redis://u:<redacted>@host"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_shutdown_grace_default_zero_and_malformed() -> None:
    assert load_config({}).shutdown_grace_ms == 20_000
    assert load_config({"SHUTDOWN_GRACE_MS": "0"}).shutdown_grace_ms == 0  # wait without bound
    with pytest.raises(ConfigError, match="SHUTDOWN_GRACE_MS"):
        load_config({"SHUTDOWN_GRACE_MS": "-1"})
