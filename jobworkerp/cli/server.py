"""`jobworkerp all-in-one | grpc-front | worker`: start a server process with settings from the
environment and `.env`.

SIGINT / SIGTERM stop taking jobs, let running jobs finish, then exit 0. A malformed setting
exits 2 with a message naming the variable.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from jobworkerp.cli.logs import setup_logging
from jobworkerp.config import Config, ConfigError, load_config


async def _serve_until_signal(config: Config, mode: str) -> None:
    from jobworkerp.app import run_server

    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def wait_for_signal() -> None:
                async for signum in signals:
                    logging.getLogger("jobworkerp").info("received %s", signal.Signals(signum).name)
                    stop.set()
                    return

            # Listening before the server has started: a signal during start-up is logged at
            # once and the server stops as soon as it is up (the front may take jobs before the
            # workers are up, so start-up is not cut short: its stop keeps what it took).
            nursery.start_soon(wait_for_signal)
            await nursery.start(run_server, config, stop, mode)
            await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobworkerp", description="jobworkerp job worker server")
    parser.add_argument("mode", choices=["all-in-one", "grpc-front", "worker"],
                        help="all-in-one: front + workers in one process (the only mode for Standalone); "
                             "grpc-front / worker: separate processes sharing Redis + MySQL (Scalable)")
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
    trio.run(_serve_until_signal, config, args.mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
