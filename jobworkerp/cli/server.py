"""`jobworkerp all-in-one | grpc-front | worker`: start a server process with settings from the
environment and `.env`.

SIGINT / SIGTERM stop taking jobs, let running jobs finish (for at most SHUTDOWN_GRACE_MS; then
they are cancelled and go back to their queue), then exit 0. A second signal cancels the running
jobs at once (still released, still exit 0); a third exits immediately with 128 + the signal's
number, skipping the clean-up. A malformed setting (a blank AUTH_TOKEN among them) exits 2 with
a message naming the variable.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

import trio

from jobworkerp.cli.heap import settle_heap
from jobworkerp.cli.logs import setup_logging
from jobworkerp.config import Config, ConfigError, load_config


async def _serve_until_signal(config: Config, mode: str) -> None:
    """Serve until a signal. The first stops gracefully (running jobs get SHUTDOWN_GRACE_MS);
    the second stops at once: running jobs are cancelled and released, so they run again; a
    third exits on the spot, for a stop that itself hangs (e.g. storage that does not answer)."""
    from jobworkerp.app import run_server

    log = logging.getLogger("jobworkerp")
    stop = trio.Event()
    hard_stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def wait_for_signals() -> None:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if not stop.is_set():
                        log.info("received %s; stopping (a second signal stops at once)", name)
                        stop.set()
                    elif not hard_stop.is_set():
                        log.warning("received %s again; stopping at once (a third signal exits without "
                                    "cleaning up)", name)
                        hard_stop.set()
                    else:
                        log.error("received %s a third time; exiting without cleaning up", name)
                        os._exit(128 + signum)

            # Listening before the server has started: a signal during start-up is logged at
            # once and the server stops as soon as it is up (the front may take jobs before the
            # workers are up, so start-up is not cut short: its stop keeps what it took).
            nursery.start_soon(wait_for_signals)
            await run_server(config, stop, mode, hard_stop=hard_stop)
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["mcp"]:  # a client of a server, with options of its own: `jobworkerp mcp --help`
        from jobworkerp.mcp.main import main as mcp_main

        return mcp_main(argv[1:])
    parser = argparse.ArgumentParser(prog="jobworkerp", description="jobworkerp job worker server")
    parser.add_argument("mode", choices=["all-in-one", "grpc-front", "worker", "mcp"],
                        help="all-in-one: front + workers in one process (the only mode for Standalone); "
                             "grpc-front / worker: separate processes sharing Redis + MySQL (Scalable); "
                             "mcp: serve a running server's workers as MCP tools (see `jobworkerp mcp --help`)")
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default: .env)")
    args = parser.parse_args(argv)
    try:
        config = load_config(dotenv_path=args.env_file)
        from jobworkerp.app import check_mode

        check_mode(config, args.mode)
    except ConfigError as e:
        print(f"jobworkerp: configuration error: {e}", file=sys.stderr)
        return 2
    setup_logging(config, args.mode)
    from jobworkerp import tracing

    tracing.configure(config)  # OTLP_ADDR / ZIPKIN_ADDR; process-wide, like logging
    settle_heap()  # after check_mode imported jobworkerp.app, i.e. what a server runs on
    try:
        trio.run(_serve_until_signal, config, args.mode)
    except (ConfigError, BaseExceptionGroup) as e:
        # A setting found wrong only once the server runs (METRICS_ADDR that cannot be bound)
        # is reported like any other, not as a traceback through the nurseries it crossed.
        error = _only_config_error(e)
        if error is None:
            raise
        print(f"jobworkerp: configuration error: {error}", file=sys.stderr)
        return 2
    finally:
        tracing.shutdown()  # the last spans, within tracing.SHUTDOWN_FLUSH_S
    return 0


def _only_config_error(error: BaseException) -> ConfigError | None:
    """The ConfigError `error` is, or that a group of exceptions holds and nothing else."""
    if isinstance(error, ConfigError):
        return error
    if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        return _only_config_error(error.exceptions[0])
    return None


if __name__ == "__main__":
    sys.exit(main())
