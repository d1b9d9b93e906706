"""What can go wrong in a CLI run, as one line for a person and an exit code for a script.

Exit codes: 0 ok, 1 the server said no (a gRPC status) or the item does not exist, 2 bad usage or
bad input caught before anything was sent, 3 the server could not be reached, 130 Ctrl-C.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_SERVER_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An error the user should read as is (no traceback)."""

    exit_code = EXIT_SERVER_ERROR


class NotFoundError(CliError):
    """A runner/worker/job/result the command needs does not exist."""

    exit_code = EXIT_SERVER_ERROR


class BadInputError(CliError):
    """Input rejected by the client before sending (JSON, unknown field, unknown enum...)."""

    exit_code = EXIT_BAD_INPUT


def describe(exc: BaseException, address: str, deadline_ms: int | None = None) -> tuple[str, int]:
    """Map any failure to (one-line message, exit code); `deadline_ms` is the global --timeout."""
    import ssl

    from jobworkerp.client.connection import AddressError
    from jobworkerp.client.protocodec import CodecError

    if isinstance(exc, CliError):
        return str(exc), exc.exit_code
    if isinstance(exc, (CodecError, AddressError)):
        return str(exc), EXIT_BAD_INPUT
    grpc = _describe_grpc(exc, address)
    if grpc is not None:
        return grpc
    if isinstance(exc, TimeoutError) and deadline_ms:
        return f"DEADLINE_EXCEEDED: no answer within the --timeout of {deadline_ms} ms", EXIT_SERVER_ERROR
    if isinstance(exc, ssl.SSLError):
        # Before OSError (SSLError is one): "not reachable" would hide a certificate problem.
        return _one_line(f"TLS with {address} failed: {exc}"), EXIT_UNREACHABLE
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or ("timed out" if isinstance(exc, TimeoutError) else type(exc).__name__)
        return f"server not reachable at {address} ({reason})", EXIT_UNREACHABLE
    return _one_line(f"{type(exc).__name__}: {exc}"), EXIT_SERVER_ERROR


def _describe_grpc(exc: BaseException, address: str) -> tuple[str, int] | None:
    """gRPC status errors and broken HTTP/2 connections (only if grpclib is already loaded)."""
    import sys

    if "grpclib" not in sys.modules:
        return None
    from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

    if isinstance(exc, GRPCError):
        message = _one_line(exc.message or "")
        return f"{exc.status.name}: {message}" if message else exc.status.name, EXIT_SERVER_ERROR
    if isinstance(exc, (StreamTerminatedError, ProtocolError)):
        return _one_line(f"connection to {address} failed: {exc}"), EXIT_UNREACHABLE
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())
