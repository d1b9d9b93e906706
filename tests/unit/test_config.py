from __future__ import annotations

import pytest

from jobworkerp.config import ConfigError, load_config
from jobworkerp.storage.rdb import DEFAULT_CHANNEL

pytestmark = pytest.mark.timeout(10)


def test_defaults_are_standalone_on_localhost_9000() -> None:
    config = load_config({})
    assert config.storage_type == "Standalone"
    assert config.grpc_addr == "127.0.0.1:9000"
    assert config.default_concurrency >= 1
    assert [c.name for c in config.all_channels()] == [DEFAULT_CHANNEL]


def test_channels_and_concurrencies_pair_up() -> None:
    config = load_config({"WORKER_DEFAULT_CONCURRENCY": "4", "WORKER_CHANNELS": "slow, gpu",
                          "WORKER_CHANNEL_CONCURRENCIES": "1,3"})
    assert [(c.name, c.concurrency) for c in config.all_channels()] == [(DEFAULT_CHANNEL, 4), ("slow", 1), ("gpu", 3)]


def test_runner_env_allowlist_is_a_comma_separated_list_of_names() -> None:
    assert load_config({}).runner_env_allowlist == ()
    assert load_config({"RUNNER_ENV_ALLOWLIST": " FOO, http_proxy ,"}).runner_env_allowlist == ("FOO", "http_proxy")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"WORKER_DEFAULT_CONCURRENCY": "four"}, "WORKER_DEFAULT_CONCURRENCY"),
        ({"WORKER_DEFAULT_CONCURRENCY": "0"}, "WORKER_DEFAULT_CONCURRENCY"),
        ({"WORKER_CHANNELS": "a,b", "WORKER_CHANNEL_CONCURRENCIES": "1"}, "WORKER_CHANNEL_CONCURRENCIES"),
        ({"WORKER_CHANNELS": "a", "WORKER_CHANNEL_CONCURRENCIES": "x"}, "WORKER_CHANNEL_CONCURRENCIES"),
        ({"GRPC_ADDR": "localhost"}, "GRPC_ADDR"),
        ({"GRPC_ADDR": "127.0.0.1:99999"}, "GRPC_ADDR"),
        ({"STORAGE_TYPE": "standalone"}, "STORAGE_TYPE"),
        ({"JOB_QUEUE_FETCH_INTERVAL": "-5"}, "JOB_QUEUE_FETCH_INTERVAL"),
        ({"STORAGE_RESTORE_AT_STARTUP": "maybe"}, "STORAGE_RESTORE_AT_STARTUP"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"RUNNER_ENV_ALLOWLIST": "FOO,BAR=1"}, "RUNNER_ENV_ALLOWLIST"),
        ({"JOB_DEFAULT_TIMEOUT_MS": "-1"}, "JOB_DEFAULT_TIMEOUT_MS"),
        ({"JOB_DEFAULT_TIMEOUT_MS": "315360000001"}, "JOB_DEFAULT_TIMEOUT_MS"),
    ],
)
def test_malformed_value_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env)
    assert info.value.variable == variable
    assert variable in str(info.value)


def test_env_overrides_dotenv_file(tmp_path, monkeypatch) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("GRPC_ADDR=127.0.0.1:9100\nSQLITE_DBNAME=from-file.sqlite3\n")
    monkeypatch.setenv("GRPC_ADDR", "127.0.0.1:9200")
    config = load_config(dotenv_path=str(dotenv))
    assert config.grpc_addr == "127.0.0.1:9200"
    assert config.sqlite_dbname == "from-file.sqlite3"
