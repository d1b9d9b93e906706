"""`jobworkerp-client`: the command-line client (also `python -m jobworkerp.cli`).

`main` parses the command line, opens one connection, runs the chosen handler and turns any
failure into one line on stderr plus an exit code (see `errors`). Only argparse is imported before
a command actually runs, so `--help` and usage errors are instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from jobworkerp.cli.client.errors import EXIT_INTERRUPTED, EXIT_OK, describe
from jobworkerp.cli.client.parser import build_parser

PROG = "jobworkerp-client"
DEBUG_ENV = "JOBWORKERP_CLIENT_DEBUG"  # set to 1 to get tracebacks instead of one-line errors
TLS_FLAGS = {"ca_cert": "--ca-cert", "client_cert": "--client-cert", "client_key": "--client-key"}


async def _run(args: argparse.Namespace) -> int:
    from jobworkerp.cli.client.context import Context
    from jobworkerp.cli.client.lookup import Lookup
    from jobworkerp.cli.client.output import Output
    from jobworkerp.client.connection import TlsFiles, open_services, parse_address

    module_name, _, function_name = args.handler.partition(":")
    handler = getattr(importlib.import_module(module_name), function_name)
    tls_files = TlsFiles(args.ca_cert, args.client_cert, args.client_key)
    async with open_services(parse_address(args.address), args.call_timeout, args.auth_token, tls_files,
                             TLS_FLAGS) as services:
        result = await handler(Context(args, services, Lookup(services), Output(args.json)))
    return EXIT_OK if result is None else int(result)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import asyncio  # not needed for --help or usage errors

    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `... --json job-result list | head -1`
        _silence_stdout()
        return EXIT_OK
    except Exception as e:
        if os.environ.get(DEBUG_ENV):
            raise
        message, code = describe(e, args.address, args.call_timeout)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return code


def _silence_stdout() -> None:
    """After a closed pipe, make the interpreter's final flush a no-op instead of a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


__all__ = ["main"]
