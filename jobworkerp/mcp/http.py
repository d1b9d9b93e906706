"""The streamable HTTP transport: the SDK's Starlette app on MCP_ADDR, behind a bearer token.

The SDK's own auth support is an OAuth resource server (issuer, metadata routes); what is needed
here is one shared secret, so a small ASGI gate checks `Authorization: Bearer <token>` in constant
time and answers 401 otherwise. The SDK adds DNS-rebinding protection on a loopback bind.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn
from mcp.server import Server
from starlette.types import ASGIApp, Receive, Scope, Send

from jobworkerp.mcp.settings import HTTP_PATH, McpSettings

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 5  # open streams (a client's GET stream never ends by itself) are closed after this


class BearerGate:
    """Lets through HTTP requests carrying the token; lifespan events pass untouched."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]})
            await send({"type": "http.response.body", "body": b"a bearer token is required\n"})
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        given = next((value for key, value in scope["headers"] if key.lower() == b"authorization"), b"")
        return hmac.compare_digest(given, self._expected)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `main.py` handles SIGINT/SIGTERM for both
    transports (uvicorn's would re-raise the signal after shutting down, so the process would
    die of it instead of exiting 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_server(server: Server[Any], settings: McpSettings) -> uvicorn.Server:
    """A uvicorn server for `server` on MCP_ADDR; run it with `.serve()`, stop it with `.should_exit`."""
    app: ASGIApp = server.streamable_http_app(streamable_http_path=HTTP_PATH, host=settings.http_host)
    if settings.bearer_token:
        app = BearerGate(app, settings.bearer_token)
    config = uvicorn.Config(app, host=settings.http_host, port=settings.http_port, lifespan="on",
                            log_level="warning", access_log=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    return _Server(config)
