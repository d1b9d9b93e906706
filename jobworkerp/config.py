"""Every setting of the server, read from the environment (and `.env`) and validated in one place.

Upstream silently falls back to defaults when a variable is malformed; here a bad value is a
start-up error that names the variable, because a job system quietly running with the wrong
concurrency or the wrong database is worse than one that refuses to start.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from jobworkerp.config_refusals import refusal

T = TypeVar("T")

STANDALONE = "Standalone"
DEFAULT_JOB_TIMEOUT_MS = 3_600_000
MAX_JOB_TIMEOUT_MS = 315_360_000_000  # ten years: what a job's own `timeout` may be at most
SCALABLE = "Scalable"
# GRPC_MAX_MESSAGE_BYTES bounds: below 64 KiB ordinary worker definitions and job args would be
# refused; above 2**32 - 1 no gRPC message can be (its length prefix is 4 bytes).
MIN_MESSAGE_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 2**32 - 1
# JOB_OUTPUT_MAX_BYTES floor: below 1 KiB even a short error-free output would be refused.
MIN_OUTPUT_BYTES = 1024
MAX_CONCURRENT_STREAMS = 2**31 - 1
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR")
MIN_FRAME_SIZE, MAX_FRAME_SIZE = 2**14, 2**24 - 1  # what HTTP/2 allows (RFC 9113 section 6.5.2)
# The built-in runners RUNNERS_ENABLED may name (runners/registry.py BUILTIN_RUNNERS; a test
# keeps the two in step). Kept here so a typo is a start-up error, not a silently disabled runner.
BUILTIN_RUNNER_NAMES = ("COMMAND", "HTTP_REQUEST", "GRPC_UNARY", "DOCKER")
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def default_docker_cpus() -> float:
    """Half the machine's CPUs (at least one): generous, yet one container cannot take every
    core. Not more than the machine has: the engine refuses NanoCpus above its CPU count."""
    return max(1.0, (os.cpu_count() or 2) / 2)


class ConfigError(ValueError):
    """A configuration variable is malformed; the message names it."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@dataclass(frozen=True)
class ChannelConfig:
    """One named job channel this process serves and how many jobs it runs at once."""

    name: str
    concurrency: int


SECRET_FIELDS = frozenset({"auth_token", "redis_password", "mysql_password"})
REDACTED = "<redacted>"


def redact_url(url: str) -> str:
    """The URL with any password in it replaced, for logs and reprs (REDIS_URL may carry one)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:{REDACTED}@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:  # unparseable: show nothing of it rather than a secret
        return REDACTED


@dataclass(frozen=True, repr=False)
class Config:
    storage_type: str = STANDALONE
    storage_restore_at_startup: bool = False
    grpc_addr: str = "127.0.0.1:9000"
    auth_token: str | None = None
    # TLS on the gRPC listener (PEM paths; both or neither). With a client CA, every client must
    # present a certificate it signed (mutual TLS).
    grpc_tls_cert: str | None = None
    grpc_tls_key: str | None = None
    grpc_tls_client_ca: str | None = None
    # A non-loopback GRPC_ADDR with neither TLS nor AUTH_TOKEN is refused unless this is set
    # (e.g. a private network already encrypted below the process).
    allow_insecure_bind: bool = False
    # grpc-web for browsers, on an HTTP/1.1 listener of its own (front/grpc_web.py): the same
    # services, token check and limits as GRPC_ADDR. None = GRPC_ADDR's host, its port + 1.
    use_grpc_web: bool = False
    grpc_web_addr: str | None = None
    # Browser origins (scheme://host[:port]) whose pages may call grpc-web; ("*",) = any. None by
    # default: a page on any site could otherwise drive a server that has no AUTH_TOKEN.
    grpc_web_cors_origins: tuple[str, ...] = ()
    # Prometheus metrics: `GET /metrics` on this HOST:PORT (jobworkerp/metrics/); None = off.
    metrics_addr: str | None = None
    # The web dashboard (jobworkerp/dashboard/): None = unset (all-in-one serves it on
    # DEFAULT_DASHBOARD_ADDR, grpc-front not at all), "" = off, else HOST:PORT.
    dashboard_addr: str | None = None
    sqlite_dbname: str = "jobworkerp.sqlite3"
    job_result_ttl_seconds: int = 3600
    fetch_interval_ms: int = 1000
    claim_lease_ms: int = 30_000
    default_concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)
    channels: tuple[ChannelConfig, ...] = ()
    plugins_runner_dir: tuple[str, ...] = ()
    # Environment variables runner hosts (and the commands and plugins they run) get on top of a
    # minimal default set (jobworkerp/runners/environment.py): everything else, the server's secrets
    # included, stays out of reach of jobs.
    runner_env_allowlist: tuple[str, ...] = ()
    redis_url: str = "redis://127.0.0.1:6379"
    redis_username: str | None = None
    redis_password: str | None = None
    redis_pool_size: int = 10
    redis_key_prefix: str = "jw:"
    # For rediss:// URLs: a private CA to trust, and a client certificate (both or neither).
    redis_tls_ca_cert: str | None = None
    redis_tls_cert: str | None = None
    redis_tls_key: str | None = None
    queue_lease_ms: int = 5000
    queue_max_crashes: int = 3
    mysql_host: str = "127.0.0.1"
    mysql_port: int = 3306
    mysql_user: str = "root"
    mysql_password: str = ""
    mysql_dbname: str = "jobworkerp"
    mysql_max_connections: int = 10
    mysql_unix_socket: str | None = None
    # TLS to MySQL: on when MYSQL_SSL is true or a CA is given. The server certificate is always
    # verified (against MYSQL_SSL_CA, else the system store), its name too unless turned off.
    mysql_ssl: bool = False
    mysql_ssl_ca: str | None = None
    mysql_ssl_cert: str | None = None
    mysql_ssl_key: str | None = None
    mysql_ssl_verify_identity: bool = True
    log_level: str = "INFO"
    log_use_json: bool = False
    log_file_dir: str | None = None
    # LOG_USE_STDOUT: True = console log on stdout, False = no console log (the file only),
    # None (unset) = stderr, as before it was read. TZ_OFFSET_HOURS: log timestamps in this
    # offset from UTC; None = the machine's local time (plain) or UTC (JSON). See cli/logs.py.
    log_use_stdout: bool | None = None
    tz_offset_hours: float | None = None
    # HTTP/2 SETTINGS_MAX_FRAME_SIZE the front advertises (the largest frame it accepts); None =
    # h2's 16384 (front/stream_limit.py).
    max_frame_size: int | None = None
    runner_host_startup_timeout: float = 30.0
    # Runner hosts of a channel for runners that run one job per host (plain plugins); their jobs
    # queue for a host beyond it. Concurrent runners (COMMAND, HTTP_REQUEST, GRPC_UNARY, DOCKER,
    # plugins that say so) share one more host per channel instead (beyond upstream).
    runner_hosts_max: int = field(default_factory=lambda: os.cpu_count() or 1)
    # A runner host whose resident memory passes this is killed and its job fails naming the
    # limit (beyond upstream); 0 turns the limit off. Generous: it catches runaway allocation,
    # not ordinary jobs.
    runner_host_max_rss_mb: int = 4096
    # A channel whose queue holds this many jobs refuses new ones with RESOURCE_EXHAUSTED
    # (beyond upstream; approximate, see usecase/queue_limit.py); 0 = no limit.
    job_queue_max_length: int = 100_000
    # Items one BulkJobService.EnqueueBatch call may carry (beyond upstream; usecase/bulk.py); a
    # larger batch is refused whole with RESOURCE_EXHAUSTED. 1000: a batch is answered only once
    # all its items are placed, so this bounds how long one call holds its connection's answer.
    job_enqueue_batch_max_items: int = 1000
    # A request message longer than this is refused with RESOURCE_EXHAUSTED from its length
    # prefix, before it is read (beyond upstream; front/message_limit.py). 8 MiB: room for the
    # 4 MB job args clients send, far from the gigabytes one unchecked 300 MB request cost.
    grpc_max_message_bytes: int = 8 * 1024 * 1024
    # Streams one HTTP/2 connection may have open at once (beyond upstream; front/stream_limit.py).
    # 100 is h2's own default, which this server always had: a client that opens more waits
    # (grpclib and grpc clients queue at the advertised limit) or has its connection refused.
    grpc_max_concurrent_streams: int = 100
    # The largest output a job may produce: its output items together (stdout, an HTTP body,
    # container logs, a plugin's items). Runners stop reading at this and the job fails with
    # OTHER_ERROR naming the setting (beyond upstream; runners/output_limit.py). 8 MiB: room for
    # the 4 MB outputs clients round-trip, and a result still fits a default gRPC message.
    job_output_max_bytes: int = 8 * 1024 * 1024
    # How far one ListenStreamByWorker subscriber may fall behind (results, and their output
    # bytes) before its stream ends with RESOURCE_EXHAUSTED (storage/worker_stream.py).
    listen_stream_max_buffered: int = 1000
    listen_stream_max_buffered_bytes: int = 64 * 1024 * 1024
    # Streamed output (JobStreamService, beyond upstream): how many chunks, and bytes of them, of
    # one job are kept for its listeners (older ones go: a listener that falls further behind, or
    # comes late, is told how many it missed), and how long after the job ended
    # (storage/output_stream.py). Bytes: one job output's worth by default.
    job_stream_max_chunks: int = 1024
    job_stream_max_bytes: int = 8 * 1024 * 1024
    job_stream_keep_s: int = 60
    # How long a process may serve a cached worker definition when a change event was missed
    # (Scalable pushes changes to every process; the expiry only bounds a missed push).
    worker_cache_ttl_s: int = 60
    # How long a stop waits for running jobs before it cancels them; a cancelled job is released
    # and runs again after a restart (or on another worker). 0 = wait for them without bound.
    # 20 s leaves a stop room to release, park and close within the 30 s after which Kubernetes
    # (terminationGracePeriodSeconds) kills the process.
    shutdown_grace_ms: int = 20_000
    # A job whose request gives no `timeout` gets this one (0 = none). Upstream's one year let a
    # hung job hold its slot for good; an hour ends it (as a retryable timeout) the same day.
    job_default_timeout_ms: int = DEFAULT_JOB_TIMEOUT_MS
    # Trace export (jobworkerp/tracing/): an OTLP/gRPC collector (`http://host:4317`) and a Zipkin
    # collector's span endpoint (`http://host:9411/api/v2/spans`); neither = tracing off.
    otlp_addr: str | None = None
    zipkin_addr: str | None = None

    def __repr__(self) -> str:
        """Every setting, secrets redacted: a Config may be logged or shown in a traceback."""
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = REDACTED
            elif f.name == "redis_url":
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Config({', '.join(shown)})"
    # Runner policy (beyond upstream; enforced by runners/policy.py at worker create/update, at
    # Enqueue and again inside the runner host). A client holding the token must not own the host.
    # Built-in runners this server offers; None = all of them.
    runners_enabled: tuple[str, ...] | None = None
    # Executables a COMMAND worker may run (bare names, found on PATH, or absolute paths); None = any.
    command_allowlist: tuple[str, ...] | None = None
    # Host directories (absolute) and named volumes (bare names) DOCKER jobs may mount; () = none.
    docker_allowed_binds: tuple[str, ...] = ()
    # fnmatch patterns of image references DOCKER jobs may use (and pull); None = any.
    docker_allowed_images: tuple[str, ...] | None = None
    # Limits set on every DOCKER container (0 = that limit off).
    docker_memory_limit_mb: int = 4096
    docker_pids_limit: int = 4096
    docker_cpus: float = field(default_factory=default_docker_cpus)

    @property
    def grpc_host(self) -> str:
        return self.grpc_addr.rsplit(":", 1)[0].strip("[]")

    @property
    def grpc_port(self) -> int:
        return int(self.grpc_addr.rsplit(":", 1)[1])

    @property
    def grpc_web_address(self) -> str:
        """GRPC_WEB_ADDR, or GRPC_ADDR's host with its port + 1 (port 0 stays 0: any free port)."""
        if self.grpc_web_addr is not None:
            return self.grpc_web_addr
        host = self.grpc_addr.rsplit(":", 1)[0]
        return f"{host}:{self.grpc_port + 1 if self.grpc_port else 0}"

    @property
    def grpc_web_host(self) -> str:
        return self.grpc_web_address.rsplit(":", 1)[0].strip("[]")

    @property
    def grpc_web_port(self) -> int:
        return int(self.grpc_web_address.rsplit(":", 1)[1])

    @property
    def grpc_tls(self) -> bool:
        return self.grpc_tls_cert is not None

    def all_channels(self) -> tuple[ChannelConfig, ...]:
        """The default channel plus every extra channel, as served by this process."""
        from jobworkerp.storage.rdb import DEFAULT_CHANNEL

        return (ChannelConfig(DEFAULT_CHANNEL, self.default_concurrency), *self.channels)


def _parse_int(var: str, raw: str, minimum: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(var, f"expected an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(var, f"must be >= {minimum}, got {value}")
    return value


def _parse_bool(var: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(var, f"expected true or false, got {raw!r}")


def _parse_addr(var: str, raw: str) -> str:
    host, sep, port = raw.strip().rpartition(":")
    if not sep or not host:
        raise ConfigError(var, f"expected HOST:PORT, got {raw!r}")
    _parse_int(var, port, minimum=0)
    if int(port) > 65535:
        raise ConfigError(var, f"port must be <= 65535, got {port}")
    return raw.strip()


def _parse_readable_file(var: str, raw: str) -> str:
    """A path that can be opened now: a missing or unreadable certificate is a start-up error
    naming its variable, not a failure on the first connection."""
    path = raw.strip()
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise ConfigError(var, f"cannot read {path!r}: {e.strerror or e}") from None
    return path


def _check_pair(first: tuple[str, str | None], second: tuple[str, str | None]) -> None:
    """Certificate and key come together: one alone would silently not do what was meant."""
    (first_var, first_value), (second_var, second_value) = first, second
    if (first_value is None) != (second_value is None):
        missing, given = (second_var, first_var) if second_value is None else (first_var, second_var)
        raise ConfigError(missing, f"must be set together with {given}")


def is_loopback_host(host: str) -> bool:
    """True for a bind address only this machine can reach: 127.0.0.0/8, ::1 or `localhost`.

    Anything else, including the wildcards 0.0.0.0 and ::, and any other name, may be reachable
    from outside."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_grpc_exposure(config: Config) -> str | None:
    """Refuse (ConfigError naming GRPC_ADDR, or GRPC_WEB_ADDR with USE_GRPC_WEB) a listener
    reachable from outside with neither TLS nor AUTH_TOKEN; return a warning when a token would
    travel in plaintext to such a listener.

    Called only for processes that listen (a worker never binds GRPC_ADDR)."""
    listeners = [("GRPC_ADDR", config.grpc_addr, config.grpc_host)]
    if config.use_grpc_web:
        listeners.append(("GRPC_WEB_ADDR", config.grpc_web_address, config.grpc_web_host))
    if config.dashboard_addr:  # the default, when unset, is a loopback address
        listeners.append(("DASHBOARD_ADDR", config.dashboard_addr, config.dashboard_addr.rsplit(":", 1)[0]))
    warnings = [w for var, addr, host in listeners if (w := _exposure(config, var, addr, host))]
    return "; ".join(warnings) or None


def _exposure(config: Config, var: str, addr: str, host: str) -> str | None:
    if config.grpc_tls or is_loopback_host(host):
        return None
    if config.auth_token:
        return (f"{var} {addr} is not a loopback address and TLS is off: "
                "AUTH_TOKEN travels in plaintext (set GRPC_TLS_CERT and GRPC_TLS_KEY)")
    if config.allow_insecure_bind:
        return (f"{var} {addr} is not a loopback address and has neither TLS nor "
                "AUTH_TOKEN (allowed by ALLOW_INSECURE_BIND)")
    raise ConfigError(var, f"{addr} is reachable from other machines but has neither TLS "
                           "(GRPC_TLS_CERT/GRPC_TLS_KEY) nor AUTH_TOKEN; bind 127.0.0.1, set one of them, "
                           "or set ALLOW_INSECURE_BIND=true")


OTLP_DEFAULT_PORT = 4317  # OTLP over gRPC (upstream jobworkerp-rs exports OTLP/gRPC too)
ZIPKIN_SPANS_PATH = "/api/v2/spans"


def _collector_url(var: str, raw: str, example: str) -> tuple[str, str, str]:
    """scheme, netloc and path of an http(s) collector URL; anything else is refused naming `var`
    (a typo would otherwise surface as export errors in the log, long after start-up)."""
    url = raw.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query
            or parts.fragment or parts.username is not None):
        raise ConfigError(var, f"expected an http:// or https:// URL such as {example} (no user or password "
                               f"in it), got {redact_url(url)!r}")
    return parts.scheme, parts.netloc, parts.path


def _parse_otlp_addr(var: str, raw: str) -> str:
    """`http://host:port` (plain gRPC) or `https://host:port` (TLS) of an OTLP/gRPC collector; no
    port = 4317. A path is refused: OTLP/gRPC has none (a `/v1/traces` URL is OTLP/HTTP's)."""
    scheme, netloc, path = _collector_url(var, raw, "http://otel-collector:4317")
    if path not in ("", "/"):
        raise ConfigError(var, f"an OTLP/gRPC address has no path (got {path!r}); expected e.g. "
                               "http://otel-collector:4317")
    if urlsplit(f"{scheme}://{netloc}").port is None:
        netloc = f"{netloc}:{OTLP_DEFAULT_PORT}"
    return f"{scheme}://{netloc}"


def _parse_zipkin_addr(var: str, raw: str) -> str:
    """The Zipkin collector's span endpoint; a URL without a path gets Zipkin's /api/v2/spans."""
    scheme, netloc, path = _collector_url(var, raw, "http://zipkin:9411/api/v2/spans")
    return f"{scheme}://{netloc}{path if path not in ('', '/') else ZIPKIN_SPANS_PATH}"


def _parse_optional_addr(var: str, raw: str) -> str:
    """HOST:PORT, or "" (set but empty) to turn the listener off."""
    return "" if raw.strip() == "" else _parse_addr(var, raw)


def _parse_origins(var: str, raw: str) -> tuple[str, ...]:
    """`*` alone, or origins as a browser sends them: scheme://host[:port], nothing after."""
    origins = _parse_allowlist(var, raw)
    if origins == ("*",):
        return origins
    for origin in origins:
        try:
            parts = urlsplit(origin)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            parts = None
        if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
                or origin.rstrip("/") != f"{parts.scheme}://{parts.netloc}"):
            raise ConfigError(var, f"{origin!r}: expected * or origins such as https://dash.example.com:8443")
    return tuple(origin.rstrip("/").lower() for origin in origins)  # browsers send them lower-case


def _grpc_web_settings(env: Mapping[str, str], grpc_addr: str) -> tuple[bool, str | None, tuple[str, ...]]:
    """USE_GRPC_WEB and its listener; a grpc-web setting without it would silently do nothing."""
    use = _get(env, "USE_GRPC_WEB", _parse_bool, False)
    addr = _get(env, "GRPC_WEB_ADDR", _parse_addr, None)
    origins: tuple[str, ...] = _get(env, "GRPC_WEB_CORS_ORIGINS", _parse_origins, ())
    if not use:
        for var, value in (("GRPC_WEB_ADDR", addr), ("GRPC_WEB_CORS_ORIGINS", origins)):
            if value:
                raise ConfigError(var, "applies only with USE_GRPC_WEB=true")
        return False, None, ()
    if addr is None and int(grpc_addr.rsplit(":", 1)[1]) == 65535:
        raise ConfigError("GRPC_WEB_ADDR", f"GRPC_ADDR's port + 1 is not a port ({grpc_addr}); set GRPC_WEB_ADDR")
    if addr is not None and addr.rsplit(":", 1)[1] != "0" and addr == grpc_addr:
        raise ConfigError("GRPC_WEB_ADDR", f"must differ from GRPC_ADDR ({grpc_addr}): grpc-web has a port of its own")
    return True, addr, origins


def _parse_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _parse_env_names(var: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list of environment variable names; a malformed one is named, not ignored."""
    names = _parse_list(raw)
    for name in names:
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(var, f"{name!r} is not an environment variable name")
    return tuple(names)
def _parse_float(var: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(var, f"expected a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(var, f"must be a finite number >= 0, got {raw.strip()}")
    return value


def _parse_allowlist(var: str, raw: str) -> tuple[str, ...]:
    """A set allowlist must list something: "," would otherwise read as an empty list in one
    process and, handed on as "", as no allowlist at all (anything goes) in the next."""
    entries = tuple(_parse_list(raw))
    if not entries:
        raise ConfigError(var, f"lists nothing ({raw!r}); leave it unset for no restriction")
    return entries


def _parse_runner_names(var: str, raw: str) -> tuple[str, ...]:
    names = tuple(name.upper() for name in _parse_allowlist(var, raw))
    unknown = [name for name in names if name not in BUILTIN_RUNNER_NAMES]
    if unknown:
        raise ConfigError(var, f"unknown runner(s) {', '.join(unknown)}; expected some of "
                               f"{', '.join(BUILTIN_RUNNER_NAMES)}")
    return names


def _parse_executables(var: str, raw: str) -> tuple[str, ...]:
    """Bare names or absolute paths: a relative path would mean whatever the working directory holds."""
    entries = _parse_allowlist(var, raw)
    for entry in entries:
        if "/" in entry and not entry.startswith("/"):
            raise ConfigError(var, f"{entry!r}: expected a bare executable name or an absolute path")
    return entries


def _parse_binds(var: str, raw: str) -> tuple[str, ...]:
    """Absolute host paths or named volumes; a relative path would be resolved against whatever
    directory the checking process happens to run in."""
    entries = tuple(_parse_list(raw))
    for entry in entries:
        if not entry.startswith("/") and not _VOLUME_NAME.fullmatch(entry):
            raise ConfigError(var, f"{entry!r}: expected an absolute host path or a volume name")
    return entries


def _parse_channels(env: Mapping[str, str]) -> tuple[ChannelConfig, ...]:
    names = _parse_list(env.get("WORKER_CHANNELS", ""))
    raw_conc = _parse_list(env.get("WORKER_CHANNEL_CONCURRENCIES", ""))
    if len(names) != len(raw_conc):
        raise ConfigError(
            "WORKER_CHANNEL_CONCURRENCIES",
            f"needs one concurrency per WORKER_CHANNELS entry ({len(names)} channels, {len(raw_conc)} values)",
        )
    seen: set[str] = set()
    channels = []
    for name, conc in zip(names, raw_conc, strict=True):
        if name in seen:
            raise ConfigError("WORKER_CHANNELS", f"channel {name!r} is listed twice")
        seen.add(name)
        channels.append(ChannelConfig(name, _parse_int("WORKER_CHANNEL_CONCURRENCIES", conc, minimum=1)))
    return tuple(channels)


def _get(env: Mapping[str, str], var: str, parse: Callable[[str, str], T], default: T) -> T:
    raw = env.get(var)
    if raw is None or raw.strip() == "":
        return default
    return parse(var, raw)


def _token(var: str, raw: str) -> str:
    """A set but blank token would silently turn auth off: refuse it instead."""
    if raw.strip() == "":
        raise ConfigError(var, "is set but empty; unset it to serve without auth, or set a token")
    return raw.strip()


def environment_config() -> Config:
    """The Config of this process's environment as it is now, for code that reads it per job.

    Why cached: runner hosts check the runner policy and JOB_OUTPUT_MAX_BYTES on every job (a
    runner used outside a pool must see the environment it runs in), and parsing every setting
    costs about 0.1 ms, paid twice per job. The cache is keyed on the environment's contents, so a
    changed variable is read afresh; a malformed one raises ConfigError each time, uncached.
    """
    # os.environ keeps the raw bytes in `_data`: a snapshot of it costs about a microsecond, of the
    # decoded items twenty. The decoded items are the fallback on an interpreter without it.
    raw = getattr(os.environ, "_data", None)
    snapshot = frozenset(raw.items() if isinstance(raw, dict) else os.environ.items())
    return _config_of_environment(snapshot)


@functools.lru_cache(maxsize=4)
def _config_of_environment(snapshot: frozenset[tuple[object, object]]) -> Config:
    del snapshot  # the cache key only: os.environ holds the same contents
    return load_config(os.environ, dotenv_path=None)


def load_config(env: Mapping[str, str] | None = None, dotenv_path: str | None = ".env") -> Config:
    """Build the Config from `env` (default: os.environ overlaid on the `.env` file).

    Real environment variables win over `.env`, as with every dotenv loader.
    """
    if env is None:
        merged: dict[str, str] = {}
        if dotenv_path and os.path.exists(dotenv_path):
            from dotenv import dotenv_values

            merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
        merged.update(os.environ)
        env = merged

    if (refused := refusal(env)) is not None:
        raise ConfigError(*refused)
    storage_type = env.get("STORAGE_TYPE", STANDALONE).strip() or STANDALONE
    if storage_type not in (STANDALONE, SCALABLE):
        raise ConfigError("STORAGE_TYPE", f"expected Standalone or Scalable, got {storage_type!r}")
    log_level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if log_level not in LOG_LEVELS:
        raise ConfigError("LOG_LEVEL", f"expected one of {', '.join(LOG_LEVELS)}, got {log_level!r}")

    def pos_int(var: str, raw: str) -> int:
        return _parse_int(var, raw, minimum=1)

    def nonneg_int(var: str, raw: str) -> int:
        return _parse_int(var, raw, minimum=0)

    def message_bytes(var: str, raw: str) -> int:
        value = _parse_int(var, raw, minimum=MIN_MESSAGE_BYTES)
        if value > MAX_MESSAGE_BYTES:
            raise ConfigError(var, f"must be <= {MAX_MESSAGE_BYTES} (a gRPC length prefix is 4 bytes), got {value}")
        return value

    def concurrent_streams(var: str, raw: str) -> int:
        value = _parse_int(var, raw, minimum=1)
        if value > MAX_CONCURRENT_STREAMS:
            raise ConfigError(var, f"must be <= {MAX_CONCURRENT_STREAMS} (an HTTP/2 setting is 31 bits), got {value}")
        return value

    def output_bytes(var: str, raw: str) -> int:
        value = _parse_int(var, raw, minimum=MIN_OUTPUT_BYTES)
        if value > MAX_MESSAGE_BYTES:
            raise ConfigError(var, f"must be <= {MAX_MESSAGE_BYTES} (a larger result fits no gRPC message), "
                                   f"got {value}")
        return value

    def job_timeout(var: str, raw: str) -> int:
        value = _parse_int(var, raw, minimum=0)
        if value > MAX_JOB_TIMEOUT_MS:
            raise ConfigError(var, f"must be at most {MAX_JOB_TIMEOUT_MS} ms (ten years; 0 = none), got {value}")
        return value

    def text(var: str, raw: str) -> str:
        return raw.strip()

    def frame_size(var: str, raw: str) -> int:
        value = _parse_int(var, raw)
        if not MIN_FRAME_SIZE <= value <= MAX_FRAME_SIZE:
            raise ConfigError(var, f"must be from {MIN_FRAME_SIZE} to {MAX_FRAME_SIZE} bytes (HTTP/2's limits), "
                                   f"got {value}")
        return value

    def utc_offset_hours(var: str, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ConfigError(var, f"expected hours from UTC such as 9 or -5.5, got {raw!r}") from None
        if not -24 < value < 24 or abs(value * 60 - round(value * 60)) > 1e-6:  # whole minutes, float-safe
            raise ConfigError(var, f"must be whole minutes between -24 and 24 hours, got {raw.strip()}")
        return value

    log_file_dir = _get(env, "LOG_FILE_DIR", text, None)
    log_use_stdout = _get(env, "LOG_USE_STDOUT", _parse_bool, None)
    if log_use_stdout is False and log_file_dir is None:
        raise ConfigError("LOG_USE_STDOUT", "false turns the console log off, and without LOG_FILE_DIR nothing "
                                            "would be logged; set LOG_FILE_DIR or unset LOG_USE_STDOUT")

    redis_url = _get(env, "REDIS_URL", text, "redis://127.0.0.1:6379")
    redis_tls = {var: _get(env, var, _parse_readable_file, None)
                 for var in ("REDIS_TLS_CA_CERT", "REDIS_TLS_CERT", "REDIS_TLS_KEY")}
    _check_pair(("REDIS_TLS_CERT", redis_tls["REDIS_TLS_CERT"]), ("REDIS_TLS_KEY", redis_tls["REDIS_TLS_KEY"]))
    for var, value in redis_tls.items():
        if value is not None and not redis_url.startswith("rediss://"):
            raise ConfigError(var, "applies only to a TLS connection: REDIS_URL must start with rediss://")
    grpc_tls_cert = _get(env, "GRPC_TLS_CERT", _parse_readable_file, None)
    grpc_tls_key = _get(env, "GRPC_TLS_KEY", _parse_readable_file, None)
    _check_pair(("GRPC_TLS_CERT", grpc_tls_cert), ("GRPC_TLS_KEY", grpc_tls_key))
    grpc_tls_client_ca = _get(env, "GRPC_TLS_CLIENT_CA", _parse_readable_file, None)
    if grpc_tls_client_ca is not None and grpc_tls_cert is None:
        raise ConfigError("GRPC_TLS_CLIENT_CA", "needs GRPC_TLS_CERT and GRPC_TLS_KEY (client certificates "
                                                "are checked only on a TLS listener)")
    mysql_ssl_cert = _get(env, "MYSQL_SSL_CERT", _parse_readable_file, None)
    mysql_ssl_key = _get(env, "MYSQL_SSL_KEY", _parse_readable_file, None)
    _check_pair(("MYSQL_SSL_CERT", mysql_ssl_cert), ("MYSQL_SSL_KEY", mysql_ssl_key))
    mysql_ssl_ca = _get(env, "MYSQL_SSL_CA", _parse_readable_file, None)

    grpc_addr = _get(env, "GRPC_ADDR", _parse_addr, "127.0.0.1:9000")
    use_grpc_web, grpc_web_addr, grpc_web_cors_origins = _grpc_web_settings(env, grpc_addr)
    return Config(
        storage_type=storage_type,
        storage_restore_at_startup=_get(env, "STORAGE_RESTORE_AT_STARTUP", _parse_bool, False),
        grpc_addr=grpc_addr,
        use_grpc_web=use_grpc_web,
        grpc_web_addr=grpc_web_addr,
        grpc_web_cors_origins=grpc_web_cors_origins,
        metrics_addr=_get(env, "METRICS_ADDR", _parse_addr, None),
        dashboard_addr=(None if "DASHBOARD_ADDR" not in env
                        else _parse_optional_addr("DASHBOARD_ADDR", env["DASHBOARD_ADDR"])),
        auth_token=_token("AUTH_TOKEN", env["AUTH_TOKEN"]) if "AUTH_TOKEN" in env else None,
        grpc_tls_cert=grpc_tls_cert,
        grpc_tls_key=grpc_tls_key,
        grpc_tls_client_ca=grpc_tls_client_ca,
        allow_insecure_bind=_get(env, "ALLOW_INSECURE_BIND", _parse_bool, False),
        sqlite_dbname=_get(env, "SQLITE_DBNAME", text, "jobworkerp.sqlite3"),
        job_result_ttl_seconds=_get(env, "JOB_QUEUE_EXPIRE_JOB_RESULT_SECONDS", pos_int, 3600),
        fetch_interval_ms=_get(env, "JOB_QUEUE_FETCH_INTERVAL", pos_int, 1000),
        claim_lease_ms=_get(env, "JOB_QUEUE_CLAIM_LEASE_MS", pos_int, 30_000),
        default_concurrency=_get(env, "WORKER_DEFAULT_CONCURRENCY", pos_int, os.cpu_count() or 1),
        channels=_parse_channels(env),
        plugins_runner_dir=tuple(_parse_list(env.get("PLUGINS_RUNNER_DIR", ""))),
        runner_env_allowlist=_parse_env_names("RUNNER_ENV_ALLOWLIST", env.get("RUNNER_ENV_ALLOWLIST", "")),
        redis_url=redis_url,
        redis_tls_ca_cert=redis_tls["REDIS_TLS_CA_CERT"],
        redis_tls_cert=redis_tls["REDIS_TLS_CERT"],
        redis_tls_key=redis_tls["REDIS_TLS_KEY"],
        redis_username=_get(env, "REDIS_USERNAME", text, None),
        redis_password=_get(env, "REDIS_PASSWORD", text, None),
        redis_pool_size=_get(env, "REDIS_POOL_SIZE", pos_int, 10),
        redis_key_prefix=env.get("REDIS_KEY_PREFIX", "jw:"),
        queue_lease_ms=_get(env, "JOB_QUEUE_WORKER_LEASE_MS", pos_int, 5000),
        queue_max_crashes=_get(env, "JOB_QUEUE_MAX_CRASHES", pos_int, 3),
        mysql_host=_get(env, "MYSQL_HOST", text, "127.0.0.1"),
        mysql_port=_get(env, "MYSQL_PORT", nonneg_int, 3306),
        mysql_user=_get(env, "MYSQL_USER", text, "root"),
        mysql_password=env.get("MYSQL_PASSWORD", ""),
        mysql_dbname=_get(env, "MYSQL_DBNAME", text, "jobworkerp"),
        mysql_max_connections=_get(env, "MYSQL_MAX_CONNECTIONS", pos_int, 10),
        mysql_unix_socket=_get(env, "MYSQL_UNIX_SOCKET", text, None),
        mysql_ssl=_get(env, "MYSQL_SSL", _parse_bool, False) or mysql_ssl_ca is not None or mysql_ssl_cert is not None,
        mysql_ssl_ca=mysql_ssl_ca,
        mysql_ssl_cert=mysql_ssl_cert,
        mysql_ssl_key=mysql_ssl_key,
        mysql_ssl_verify_identity=_get(env, "MYSQL_SSL_VERIFY_IDENTITY", _parse_bool, True),
        log_level=log_level,
        log_use_json=_get(env, "LOG_USE_JSON", _parse_bool, False),
        log_file_dir=log_file_dir,
        log_use_stdout=log_use_stdout,
        tz_offset_hours=_get(env, "TZ_OFFSET_HOURS", utc_offset_hours, None),
        max_frame_size=_get(env, "MAX_FRAME_SIZE", frame_size, None),
        worker_cache_ttl_s=_get(env, "WORKER_CACHE_TTL_SECONDS", pos_int, 60),
        grpc_max_message_bytes=_get(env, "GRPC_MAX_MESSAGE_BYTES", message_bytes, 8 * 1024 * 1024),
        grpc_max_concurrent_streams=_get(env, "GRPC_MAX_CONCURRENT_STREAMS", concurrent_streams, 100),
        job_output_max_bytes=_get(env, "JOB_OUTPUT_MAX_BYTES", output_bytes, 8 * 1024 * 1024),
        listen_stream_max_buffered=_get(env, "LISTEN_STREAM_MAX_BUFFERED", pos_int, 1000),
        listen_stream_max_buffered_bytes=_get(env, "LISTEN_STREAM_MAX_BUFFERED_BYTES", pos_int, 64 * 1024 * 1024),
        job_stream_max_chunks=_get(env, "JOB_STREAM_MAX_CHUNKS", pos_int, 1024),
        job_stream_max_bytes=_get(env, "JOB_STREAM_MAX_BYTES", pos_int, 8 * 1024 * 1024),
        job_stream_keep_s=_get(env, "JOB_STREAM_KEEP_SECONDS", nonneg_int, 60),
        runner_host_max_rss_mb=_get(env, "RUNNER_HOST_MAX_RSS_MB", nonneg_int, 4096),
        runner_hosts_max=_get(env, "RUNNER_HOSTS_MAX", pos_int, os.cpu_count() or 1),
        job_queue_max_length=_get(env, "JOB_QUEUE_MAX_LENGTH", nonneg_int, 100_000),
        job_enqueue_batch_max_items=_get(env, "JOB_ENQUEUE_BATCH_MAX_ITEMS", pos_int, 1000),
        shutdown_grace_ms=_get(env, "SHUTDOWN_GRACE_MS", nonneg_int, 20_000),
        job_default_timeout_ms=_get(env, "JOB_DEFAULT_TIMEOUT_MS", job_timeout, DEFAULT_JOB_TIMEOUT_MS),
        otlp_addr=_get(env, "OTLP_ADDR", _parse_otlp_addr, None),
        zipkin_addr=_get(env, "ZIPKIN_ADDR", _parse_zipkin_addr, None),
        runners_enabled=_get(env, "RUNNERS_ENABLED", _parse_runner_names, None),
        command_allowlist=_get(env, "COMMAND_ALLOWLIST", _parse_executables, None),
        docker_allowed_binds=_get(env, "DOCKER_ALLOWED_BINDS", _parse_binds, ()),
        docker_allowed_images=_get(env, "DOCKER_ALLOWED_IMAGES", _parse_allowlist, None),
        docker_memory_limit_mb=_get(env, "DOCKER_MEMORY_LIMIT_MB", nonneg_int, 4096),
        docker_pids_limit=_get(env, "DOCKER_PIDS_LIMIT", nonneg_int, 4096),
        docker_cpus=_get(env, "DOCKER_CPUS", _parse_float, default_docker_cpus()),
    )
