"""One gRPC connection to the server, with the stubs every command uses.

The global `--timeout` and `--auth-token` are applied once, at the stub level, so every call a
command makes carries the same deadline and `jobworkerp-auth` metadata without repeating it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from grpclib.client import Channel

    from jobworkerp.proto.jobworkerp import service as svc

AUTH_METADATA_KEY = "jobworkerp-auth"


@dataclass(frozen=True)
class Address:
    """Where the server is; `text` is what the user typed (for messages)."""

    text: str
    host: str
    port: int
    tls: bool


class AddressError(ValueError):
    """The --address value cannot be understood."""


def parse_address(text: str) -> Address:
    """Accept `http://host:port`, `https://host:port`, or a bare `host:port` (plaintext)."""
    raw = text if "://" in text else f"http://{text}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https", "grpc", "grpcs"):
        raise AddressError(f"unsupported scheme in address {text!r} (use http:// or https://)")
    tls = parts.scheme in ("https", "grpcs")
    try:
        port = parts.port
    except ValueError:
        raise AddressError(f"bad port in address {text!r}") from None
    if not parts.hostname:
        raise AddressError(f"no host in address {text!r}")
    return Address(text, parts.hostname, port or (443 if tls else 80), tls)


@dataclass
class Services:
    """The service stubs over one HTTP/2 connection."""

    channel: Channel
    runner: svc.RunnerServiceStub
    worker: svc.WorkerServiceStub
    job: svc.JobServiceStub
    job_result: svc.JobResultServiceStub
    job_status: svc.JobStatusServiceStub


@asynccontextmanager
async def open_services(address: Address, timeout_ms: int | None, auth_token: str | None) -> AsyncIterator[Services]:
    """Connect lazily (grpclib dials on the first call) and close the connection on exit."""
    from grpclib.client import Channel

    from jobworkerp.proto.jobworkerp import service as svc

    channel = Channel(address.host, address.port, ssl=True if address.tls else None)
    options: dict[str, Any] = {
        "timeout": timeout_ms / 1000 if timeout_ms else None,
        "metadata": {AUTH_METADATA_KEY: auth_token} if auth_token else None,
    }
    try:
        yield Services(
            channel,
            svc.RunnerServiceStub(channel, **options),
            svc.WorkerServiceStub(channel, **options),
            svc.JobServiceStub(channel, **options),
            svc.JobResultServiceStub(channel, **options),
            svc.JobStatusServiceStub(channel, **options),
        )
    finally:
        channel.close()
