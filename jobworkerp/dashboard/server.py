"""Serve the dashboard on DASHBOARD_ADDR until the front stops (called from app.serve_fronts)."""

from __future__ import annotations

import errno
import logging

import trio

from jobworkerp.config import Config
from jobworkerp.dashboard.api import Api
from jobworkerp.dashboard.http import HttpServer
from jobworkerp.dashboard.listen import Listen, own_target, refuse
from jobworkerp.dashboard.pages import register
from jobworkerp.dashboard.session import Sessions
from jobworkerp.dashboard.site import Site
from jobworkerp.front.auth import FailureLimiter, TokenCheck
from jobworkerp.front.tls import server_ssl_context

log = logging.getLogger(__name__)

# Sent with every answer: no framing by other sites, scripts and styles only from this server
# (app.js and app.css; no inline script, so an injected one would not run even if it got through),
# forms only to this server, nothing sniffed, nothing cached by the browser but static files.
SECURITY_HEADERS = [
    ("content-security-policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
]


async def serve_dashboard(config: Config, listen: Listen, grpc_port: int, mode: str, limiter: FailureLimiter,
                          stopping: trio.Event, *, task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED
                          ) -> None:
    """Bind, report the port (None when the dashboard does not run), serve until `stopping`."""
    target = own_target(config, grpc_port)
    if target is None:
        why = "the dashboard cannot call the API when GRPC_TLS_CLIENT_CA requires client certificates"
        if listen.explicit:
            raise refuse(listen, why + "; unset DASHBOARD_ADDR")
        log.warning("dashboard: off: %s", why)
        task_status.started(None)
        return
    try:
        listeners = await trio.open_tcp_listeners(listen.port, host=listen.host)
    except OSError as e:
        if listen.explicit:
            raise refuse(listen, f"cannot listen there: {e.strerror or e}") from None
        hint = "in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        log.warning("dashboard: not started: the default address %s is %s (set DASHBOARD_ADDR to another "
                    "address, or to an empty value to turn it off)", listen.text, hint)
        task_status.started(None)
        return
    ssl_context = server_ssl_context(config, alpn=("http/1.1",))
    port = listeners[0].socket.getsockname()[1]
    if ssl_context is not None:
        listeners = [trio.SSLListener(listener, ssl_context) for listener in listeners]  # type: ignore[misc]
    api = await Api.open(target)
    try:
        sessions = Sessions(TokenCheck(config.auth_token, limiter) if config.auth_token else None)
        site = Site(api, sessions, config.all_channels(), mode)
        register(site)
        server = HttpServer(site.handle, SECURITY_HEADERS, secure=ssl_context is not None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(site.rates.run)
            nursery.start_soon(trio.serve_listeners, server.serve_connection, listeners)
            scheme = "https" if ssl_context is not None else "http"
            log.info("dashboard on %s://%s:%d/%s", scheme, listen.host, port,
                     " (log in with AUTH_TOKEN)" if config.auth_token else "")
            task_status.started(port)
            await stopping.wait()
            nursery.cancel_scope.cancel()
    finally:
        api.close()
