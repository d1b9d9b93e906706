"""`jobworkerp mcp [--http]`: serve a jobworkerp server's workers as MCP tools.

stdio by default (an MCP client starts the process and talks over its stdin/stdout); with
`--http`, streamable HTTP on MCP_ADDR at /mcp. Either way it is a client of a running server over
gRPC (`--address`, `--auth-token`, TLS options as `jobworkerp-client` takes them), so it works in
front of any server: Standalone, or any `grpc-front` of a Scalable cluster.

It runs on asyncio (through anyio, as the SDK does): grpclib and uvicorn are asyncio libraries,
and this process has no trio code to host, unlike the server.

SIGINT/SIGTERM stop it: calls in progress are cancelled (their jobs deleted), then it exits 0.
A malformed option or MCP_* variable exits 2 naming it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

from jobworkerp.cli.client.parser import AUTH_ENV, DEFAULT_ADDRESS

if TYPE_CHECKING:
    from jobworkerp.mcp.settings import McpSettings

# Libraries whose DEBUG lines (a line per HTTP/2 header, per SSE event) would bury this process's own.
NOISY_LOGGERS = ("mcp", "httpx", "httpx2", "httpcore", "uvicorn", "sse_starlette", "starlette", "grpclib", "hpack",
                 "h2", "asyncio")
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobworkerp mcp",
        description="Serve the workers of a jobworkerp server as MCP tools (stdio, or streamable HTTP with --http).",
        epilog="MCP_ADDR, MCP_AUTH_TOKEN, MCP_WORKERS, MCP_CHANNEL, MCP_POLL_INTERVAL_MS and "
               "MCP_PROGRESS_INTERVAL_MS are read from the environment and --env-file (README: MCP).")
    parser.add_argument("-a", "--address", default=DEFAULT_ADDRESS,
                        help=f"the jobworkerp server, http(s)://host:port (default {DEFAULT_ADDRESS})")
    parser.add_argument("--auth-token", default=os.environ.get(AUTH_ENV) or None,
                        help=f"the server's auth token, sent as `jobworkerp-auth` metadata (default: ${AUTH_ENV})")
    parser.add_argument("--ca-cert", metavar="FILE", help="https:// only: PEM CA to verify the server with")
    parser.add_argument("--client-cert", metavar="FILE", help="https:// only: PEM client certificate (mutual TLS)")
    parser.add_argument("--client-key", metavar="FILE", help="https:// only: PEM key of --client-cert")
    parser.add_argument("--http", action="store_true",
                        help="serve streamable HTTP on MCP_ADDR (default 127.0.0.1:9010) instead of stdio")
    parser.add_argument("--env-file", default=".env", help="dotenv file to read MCP_* from (default: .env)")
    return parser


def _setup_logging(env: dict[str, str]) -> None:
    """Logs go to stderr: on stdio, stdout is the protocol."""
    level = env.get("LOG_LEVEL", "INFO").upper()
    level = {"TRACE": "DEBUG", "WARN": "WARNING"}.get(level, level)
    logging.basicConfig(stream=sys.stderr, level=level if level in LOG_LEVELS else "INFO",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


async def serve(settings: McpSettings) -> None:
    """Run until the transport ends (stdin closed) or a signal; cancels what is in flight."""
    import anyio
    import mcp.server.stdio

    from jobworkerp.client.connection import open_services
    from jobworkerp.mcp.changes import ChangeNotifier, watch_tools
    from jobworkerp.mcp.http import http_server
    from jobworkerp.mcp.server import JobworkerpMcp, initialization_options

    log = logging.getLogger("jobworkerp.mcp")
    async with open_services(settings.address, None, settings.auth_token, settings.tls_files) as services:
        notifier = ChangeNotifier()
        handlers = JobworkerpMcp(services, settings, notifier)
        server = handlers.server()
        async with anyio.create_task_group() as tg:
            await tg.start(watch_tools, handlers.fingerprint, notifier, settings.poll_interval_s)
            if settings.http:
                web = http_server(server, settings)

                async def stop_on_signal() -> None:
                    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for _ in signals:
                            web.should_exit = True
                            return

                tg.start_soon(stop_on_signal)
                log.info("MCP over streamable HTTP on http://%s:%s/mcp for %s", settings.http_host,
                         settings.http_port, settings.address.text)
                await web.serve()
            else:

                async def cancel_on_signal() -> None:
                    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for _ in signals:
                            tg.cancel_scope.cancel()
                            return

                tg.start_soon(cancel_on_signal)
                log.info("MCP over stdio for %s", settings.address.text)
                async with mcp.server.stdio.stdio_server() as (read_stream, write_stream):
                    await server.run(read_stream, write_stream, initialization_options(server))
            tg.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from jobworkerp.client.connection import AddressError, TlsFiles, client_ssl_context, parse_address
    from jobworkerp.mcp.settings import SettingsError, load_settings, read_env

    env = read_env(args.env_file)
    try:
        address = parse_address(args.address)
        tls_files = TlsFiles(args.ca_cert, args.client_cert, args.client_key)
        client_ssl_context(address, tls_files)  # refuse bad TLS options now, not on the first call
        settings = load_settings(address, args.auth_token, tls_files, args.http, env)
    except (AddressError, SettingsError) as e:
        print(f"jobworkerp mcp: configuration error: {e}", file=sys.stderr)
        return 2
    _setup_logging(env)
    import anyio

    try:
        anyio.run(serve, settings, backend="asyncio")
    except KeyboardInterrupt:
        return 130
    return 0
