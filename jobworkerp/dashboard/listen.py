"""Where the dashboard listens, and how it reaches the gRPC API it shows.

DASHBOARD_ADDR unset: `all-in-one` serves the dashboard on DEFAULT_ADDR and `grpc-front` does not
serve it (a Scalable deployment has many fronts; the operator picks the one that serves it). Set
but empty: off. A default address that is busy (a second server on the machine, a test run) is
logged and skipped, so it never stops a server; an address set explicitly that cannot be bound
stops start-up with a ConfigError naming DASHBOARD_ADDR, since the operator asked for it.

The dashboard talks to the API as any client would: a gRPC connection to this process's own
GRPC_ADDR (a wildcard bind is reached on loopback), with AUTH_TOKEN as its metadata. With TLS on,
the connection trusts exactly the server's own certificate (GRPC_TLS_CERT, partial chain, no host
name check: it is the listener this process opened). It has no client certificate, so with
GRPC_TLS_CLIENT_CA (mutual TLS) the dashboard cannot call the API: off by default, refused when
DASHBOARD_ADDR asks for it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from jobworkerp.config import Config, ConfigError

DEFAULT_ADDR = "127.0.0.1:9080"
VARIABLE = "DASHBOARD_ADDR"


@dataclass(frozen=True)
class Listen:
    host: str
    port: int
    explicit: bool  # set by DASHBOARD_ADDR (a failure to bind stops start-up) or the default

    @property
    def text(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Target:
    """The gRPC listener the dashboard calls."""

    host: str
    port: int
    ssl: ssl.SSLContext | None
    token: str | None


def dashboard_listen(config: Config, mode: str) -> Listen | None:
    """The address to serve on in `mode`, or None when the dashboard is off."""
    addr = config.dashboard_addr
    if addr == "":
        return None
    explicit = addr is not None
    if addr is None:
        if mode != "all-in-one":
            return None
        addr = DEFAULT_ADDR
    host, _, port = addr.rpartition(":")
    return Listen(host.strip("[]"), int(port), explicit)


def _loopback_for(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def own_target(config: Config, grpc_port: int) -> Target | None:
    """The gRPC listener of this process, or None when the dashboard cannot call it (mutual TLS)."""
    if config.grpc_tls_client_ca is not None:
        return None
    context = None
    if config.grpc_tls_cert is not None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=config.grpc_tls_cert)
        context.check_hostname = False
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["h2"])
    return Target(_loopback_for(config.grpc_host), grpc_port, context, config.auth_token)


def refuse(listen: Listen, why: str) -> ConfigError:
    return ConfigError(VARIABLE, f"{listen.text}: {why}")
