"""One gRPC connection to the server, with the stubs of every service: shared by the Python client
(`jobworkerp.client`) and the command-line client (`jobworkerp-client`).

A default timeout and the auth token are applied once, at the stub level, so every call carries
the same deadline and `jobworkerp-auth` metadata without repeating it (a call may still pass its
own timeout). An `https://` address connects over TLS, verifying the server against a CA file (a
private CA) or the system store, and presenting a client certificate and key when the server asks
for one. Messages name the TLS options as the caller spells them (`option_names`: the CLI's
`--ca-cert`, the library's `ca_cert`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import ssl

    from grpclib.client import Channel

    from jobworkerp.proto.jobworkerp import ext
    from jobworkerp.proto.jobworkerp import service as svc

AUTH_METADATA_KEY = "jobworkerp-auth"
# How errors name the TlsFiles fields; the CLI passes its flags instead.
FIELD_NAMES = {"ca_cert": "ca_cert", "client_cert": "client_cert", "client_key": "client_key"}


@dataclass(frozen=True)
class Address:
    """Where the server is; `text` is what the user typed (for messages)."""

    text: str
    host: str
    port: int
    tls: bool


class AddressError(ValueError):
    """The address (or the TLS options that go with it) cannot be used."""


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


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS connection: a CA to trust instead of the system store, and a client
    certificate with its key (mutual TLS)."""

    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


def client_ssl_context(address: Address, files: TlsFiles,
                       option_names: Mapping[str, str] = FIELD_NAMES) -> ssl.SSLContext | None:
    """The TLS context for `address`, or None for plaintext.

    TLS options with a plaintext address are an error rather than ignored: the user meant the
    connection to be protected, and sending the auth token in the clear instead would be worse
    than not connecting."""
    given = [option_names[field] for field, value in (("ca_cert", files.ca_cert), ("client_cert", files.client_cert),
                                                      ("client_key", files.client_key)) if value]
    if not address.tls:
        if given:
            raise AddressError(f"{given[0]} needs an https:// address, not {address.text!r}")
        return None
    if (files.client_cert is None) != (files.client_key is None):
        raise AddressError(f"{option_names['client_cert']} and {option_names['client_key']} must be given together")
    import ssl

    try:
        # Without --ca-cert: the system store (as grpclib's own default, minus certifi).
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=files.ca_cert)
        if files.client_cert:
            context.load_cert_chain(files.client_cert, files.client_key)
    except (OSError, ssl.SSLError) as e:
        raise AddressError(f"cannot load TLS files: {e}") from None
    # HTTP/2 needs TLS >= 1.2 and ALPN h2; grpclib refuses a connection that does not select it.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    return context


@dataclass
class Services:
    """The service stubs over one HTTP/2 connection."""

    channel: Channel
    runner: svc.RunnerServiceStub
    worker: svc.WorkerServiceStub
    job: svc.JobServiceStub
    job_result: svc.JobResultServiceStub
    job_status: svc.JobStatusServiceStub
    bulk: ext.BulkJobServiceStub
    streams: ext.JobStreamServiceStub
    channel_info: ext.ChannelInfoServiceStub


def services_over(channel: Channel, timeout_s: float | None, auth_token: str | None) -> Services:
    """Every stub over `channel`, each call with this deadline and the token's metadata."""
    from jobworkerp.proto.jobworkerp import ext
    from jobworkerp.proto.jobworkerp import service as svc

    options: dict[str, Any] = {
        "timeout": timeout_s,
        "metadata": {AUTH_METADATA_KEY: auth_token} if auth_token else None,
    }
    return Services(
        channel,
        svc.RunnerServiceStub(channel, **options),
        svc.WorkerServiceStub(channel, **options),
        svc.JobServiceStub(channel, **options),
        svc.JobResultServiceStub(channel, **options),
        svc.JobStatusServiceStub(channel, **options),
        ext.BulkJobServiceStub(channel, **options),
        ext.JobStreamServiceStub(channel, **options),
        ext.ChannelInfoServiceStub(channel, **options),
    )


@asynccontextmanager
async def open_services(address: Address, timeout_ms: int | None, auth_token: str | None,
                        tls_files: TlsFiles | None = None,
                        option_names: Mapping[str, str] = FIELD_NAMES) -> AsyncIterator[Services]:
    """Connect lazily (grpclib dials on the first call) and close the connection on exit.

    Must be entered in a running asyncio loop: grpclib's Channel binds to the loop it is made in."""
    from jobworkerp.client.fair_channel import FairChannel
    from jobworkerp.wire_codec import MessageCodec

    context = client_ssl_context(address, tls_files or TlsFiles(), option_names)
    channel = FairChannel(address.host, address.port, ssl=context, codec=MessageCodec())
    try:
        yield services_over(channel, timeout_ms / 1000 if timeout_ms else None, auth_token)
    finally:
        channel.close()
