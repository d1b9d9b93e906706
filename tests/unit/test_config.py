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
        ({"MAX_FRAME_SIZE": "16383"}, "MAX_FRAME_SIZE"),
        ({"MAX_FRAME_SIZE": "16777216"}, "MAX_FRAME_SIZE"),
        ({"TZ_OFFSET_HOURS": "-24"}, "TZ_OFFSET_HOURS"),
        ({"TZ_OFFSET_HOURS": "5.33"}, "TZ_OFFSET_HOURS"),
        ({"TZ_OFFSET_HOURS": "nan"}, "TZ_OFFSET_HOURS"),
        ({"LOG_USE_STDOUT": "false"}, "LOG_USE_STDOUT"),
        ({"USE_GRPC_WEB": "maybe"}, "USE_GRPC_WEB"),
        ({"METRICS_ADDR": "9100"}, "METRICS_ADDR"),
        ({"METRICS_ADDR": "127.0.0.1:65536"}, "METRICS_ADDR"),
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


# Upstream's configuration list (README: Configuration), each with a value other than our default.
# DOCKER_GID is not in it: only the DOCKER runner's hint reads it (runners/docker_api.py).
UPSTREAM_SETTINGS = {
    "STORAGE_TYPE": "Scalable", "STORAGE_RESTORE_AT_STARTUP": "true", "JOB_QUEUE_EXPIRE_JOB_RESULT_SECONDS": "86400",
    "JOB_QUEUE_FETCH_INTERVAL": "500", "WORKER_DEFAULT_CONCURRENCY": "977", "GRPC_ADDR": "127.0.0.1:9100",
    "USE_GRPC_WEB": "true", "MAX_FRAME_SIZE": "16777215", "PLUGINS_RUNNER_DIR": "/srv/plugins",
    "SQLITE_DBNAME": "other.sqlite3", "SQLITE_MAX_CONNECTIONS": "20", "MYSQL_HOST": "db", "MYSQL_PORT": "3307",
    "MYSQL_USER": "jobs", "MYSQL_PASSWORD": "secret", "MYSQL_DBNAME": "test", "MYSQL_MAX_CONNECTIONS": "20",
    "REDIS_URL": "redis://redis:6379", "REDIS_USERNAME": "jobs", "REDIS_PASSWORD": "secret", "REDIS_POOL_SIZE": "20",
    "REDIS_POOL_CONNECTION_TIMEOUT_MSEC": "5000", "REDIS_POOL_IDLE_TIMEOUT_MSEC": "60000",
    "MEMORY_CACHE_NUM_COUNTERS": "1296000", "MEMORY_CACHE_MAX_COST": "1296", "MEMORY_CACHE_USE_METRICS": "true",
    "LOG_LEVEL": "DEBUG", "LOG_FILE_DIR": "log/", "LOG_USE_JSON": "true", "LOG_USE_STDOUT": "true",
    "OTLP_ADDR": "http://otel:4317", "ZIPKIN_ADDR": "http://zipkin:9411/api/v2/spans", "TZ_OFFSET_HOURS": "9",
}


@pytest.mark.parametrize("variable", sorted(UPSTREAM_SETTINGS))
def test_every_upstream_setting_is_honoured_or_refused_by_name(variable: str) -> None:
    try:
        config = load_config({variable: UPSTREAM_SETTINGS[variable]})
    except ConfigError as e:
        assert e.variable == variable
        assert str(e).startswith(f"{variable}: ")
    else:
        assert config != load_config({}), f"{variable} is neither honoured nor refused"


def test_worker_channels_are_honoured_as_a_pair() -> None:
    config = load_config({"WORKER_CHANNELS": "a,b", "WORKER_CHANNEL_CONCURRENCIES": "4,1"})
    assert [(c.name, c.concurrency) for c in config.channels] == [("a", 4), ("b", 1)]


def test_upstream_defaults_and_blank_values_of_refused_settings_are_accepted() -> None:
    assert load_config({"USE_GRPC_WEB": "false", "OTLP_ADDR": "", "ZIPKIN_ADDR": " "}) == load_config({})


def test_metrics_are_off_unless_metrics_addr_is_set() -> None:
    assert load_config({}).metrics_addr is None
    assert load_config({"METRICS_ADDR": " 0.0.0.0:9100 "}).metrics_addr == "0.0.0.0:9100"


def test_frame_size_offset_and_stdout_are_read() -> None:
    config = load_config({"MAX_FRAME_SIZE": "16384", "TZ_OFFSET_HOURS": "-5.5", "LOG_USE_STDOUT": "false",
                          "LOG_FILE_DIR": "logs"})
    assert (config.max_frame_size, config.tz_offset_hours, config.log_use_stdout) == (16384, -5.5, False)
    assert (load_config({}).max_frame_size, load_config({}).log_use_stdout) == (None, None)
