"""The TLS context of the gRPC listener (GRPC_TLS_CERT / GRPC_TLS_KEY / GRPC_TLS_CLIENT_CA).

Built once at start-up, so a certificate that does not parse, or a key that does not match it,
stops the server with a configuration error naming the variable instead of failing every
handshake later.
"""

from __future__ import annotations

import ssl

from jobworkerp.config import Config, ConfigError


def server_ssl_context(config: Config, alpn: tuple[str, ...] = ("h2",)) -> ssl.SSLContext | None:
    """The listener's context, or None when TLS is off.

    HTTP/2 over TLS needs ALPN `h2` (gRPC clients refuse a connection that does not select it),
    and TLS 1.2 is the floor HTTP/2 itself demands (RFC 9113 section 9.2). The grpc-web listener
    (front/grpc_web.py) speaks HTTP/1.1 and asks for `("http/1.1",)`, with the same certificate
    and client CA."""
    if config.grpc_tls_cert is None or config.grpc_tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(list(alpn))
    try:
        context.load_cert_chain(config.grpc_tls_cert, config.grpc_tls_key)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError("GRPC_TLS_CERT", f"cannot use certificate {config.grpc_tls_cert!r} with key "
                                           f"{config.grpc_tls_key!r} (GRPC_TLS_KEY): {e}") from None
    if config.grpc_tls_client_ca is not None:
        try:
            context.load_verify_locations(cafile=config.grpc_tls_client_ca)
        except (ssl.SSLError, OSError) as e:
            raise ConfigError("GRPC_TLS_CLIENT_CA", f"cannot load CA {config.grpc_tls_client_ca!r}: {e}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
