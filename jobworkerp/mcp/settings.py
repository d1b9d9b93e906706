"""What `jobworkerp mcp` is told: the server to reach (options, as the client takes them) and the
MCP_* variables (environment over `--env-file`, as the server reads its own settings).

Kept apart from `jobworkerp.config`: that is the server's configuration, and this process is a
client of a server, possibly on another machine, with nothing of the server's settings to read.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from jobworkerp.client.connection import Address, TlsFiles

DEFAULT_MCP_ADDR = "127.0.0.1:9010"
DEFAULT_POLL_INTERVAL_MS = 2000
DEFAULT_PROGRESS_INTERVAL_MS = 5000
# The name upstream gives the channel of workers that name none (WorkerData.channel absent).
DEFAULT_CHANNEL = "__default_job_channel__"
HTTP_PATH = "/mcp"


class SettingsError(ValueError):
    """A malformed MCP_* variable or option, named in the message."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")


@dataclass(frozen=True)
class WorkerFilter:
    """Which workers become tools: by name (MCP_WORKERS) and by channel (MCP_CHANNEL); both
    when both are set. None = no restriction."""

    names: frozenset[str] | None = None
    channel: str | None = None

    def admits(self, name: str, channel: str | None) -> bool:
        if self.names is not None and name not in self.names:
            return False
        return self.channel is None or (channel or DEFAULT_CHANNEL) == self.channel


@dataclass(frozen=True)
class McpSettings:
    """Everything one `jobworkerp mcp` process runs with."""

    address: Address
    auth_token: str | None
    tls_files: TlsFiles
    filter: WorkerFilter
    poll_interval_s: float
    progress_interval_s: float
    http: bool = False
    http_host: str = "127.0.0.1"
    http_port: int = 9010
    bearer_token: str | None = None


def read_env(env_file: str | None) -> dict[str, str]:
    """The real environment over `env_file` (when it exists), as `jobworkerp.config` does."""
    merged: dict[str, str] = {}
    if env_file and os.path.exists(env_file):
        from dotenv import dotenv_values

        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ)
    return merged


def _positive_ms(env: Mapping[str, str], name: str, default: int) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default / 1000
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(name, f"expected milliseconds as an integer, got {text!r}") from None
    if value <= 0:
        raise SettingsError(name, f"must be at least 1, got {value}")
    return value / 1000


def _names(env: Mapping[str, str], name: str) -> frozenset[str] | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def parse_listen_address(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port)."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise SettingsError("MCP_ADDR", f"expected host:port, got {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port_text)
    except ValueError:
        raise SettingsError("MCP_ADDR", f"bad port in {text!r}") from None
    if not 0 < port < 65536:
        raise SettingsError("MCP_ADDR", f"port out of range in {text!r}")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def load_settings(address: Address, auth_token: str | None, tls_files: TlsFiles, http: bool,
                  env: Mapping[str, str]) -> McpSettings:
    """Validate the MCP_* variables. The HTTP endpoint's bearer token is MCP_AUTH_TOKEN, or else
    the gRPC auth token: an endpoint in front of a token-protected server must not let in anyone
    who can reach it. Bound to an address other than loopback, it refuses to start without one."""
    host, port = parse_listen_address(env.get("MCP_ADDR", "").strip() or DEFAULT_MCP_ADDR)
    bearer = env.get("MCP_AUTH_TOKEN")
    if bearer is not None and not bearer.strip():
        raise SettingsError("MCP_AUTH_TOKEN", "is set but blank (unset it to use the gRPC auth token, or none)")
    bearer = bearer or auth_token
    if http and bearer is None and not is_loopback(host):
        raise SettingsError("MCP_ADDR", f"{host} is not a loopback address: set MCP_AUTH_TOKEN (or an auth token "
                                        "for the server) so the endpoint asks callers for a bearer token")
    channel = env.get("MCP_CHANNEL", "").strip() or None
    return McpSettings(
        address=address,
        auth_token=auth_token,
        tls_files=tls_files,
        filter=WorkerFilter(_names(env, "MCP_WORKERS"), channel),
        poll_interval_s=_positive_ms(env, "MCP_POLL_INTERVAL_MS", DEFAULT_POLL_INTERVAL_MS),
        progress_interval_s=_positive_ms(env, "MCP_PROGRESS_INTERVAL_MS", DEFAULT_PROGRESS_INTERVAL_MS),
        http=http,
        http_host=host,
        http_port=port,
        bearer_token=bearer,
    )
