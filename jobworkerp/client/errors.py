"""What the Python client raises: one class per failure a caller handles differently.

Every error is a `ClientError`; `code` is the gRPC status name when the server answered one (None
when the failure was on this side, e.g. the server could not be reached). A job that ran and
failed is not a transport error: `JobFailed` carries its ResultStatus and output.

`translate` turns what grpclib and the socket layer raise into these classes, so callers never
need to import grpclib; `Unavailable` is the one a caller may retry (the client itself retries
idempotent reads on it).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobworkerp.client.models import JobResult


class ClientError(Exception):
    """Base of every error of `jobworkerp.client`."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code  # the gRPC status name, when the server answered with one


class NotFound(ClientError):
    """A runner, worker or job that does not exist."""


class WorkerNotFound(NotFound):
    """The worker named or numbered does not exist."""


class RunnerNotFound(NotFound):
    """No runner of that name or id (see `Client.runners()`)."""


class AlreadyExists(ClientError):
    """A worker name, or a job's uniq_key, that is already taken."""


class InvalidArgument(ClientError, ValueError):
    """Settings or args that do not fit the runner's messages, or an option the server refuses."""


class Unavailable(ClientError, ConnectionError):
    """The server cannot be reached, or answered UNAVAILABLE (worth retrying later)."""


class DeadlineExceeded(ClientError, TimeoutError):
    """No answer within the timeout given (the client's or the server's)."""


class Unauthenticated(ClientError):
    """The server wants a token (`Client(token=...)`), or not this one."""


class ResourceExhausted(ClientError):
    """A server limit: a full queue, too large a message, too many streams."""


class NoResult(ClientError):
    """The worker's response type gives no result to wait for (NO_RESULT: use `Client.results`)."""


class JobFailed(ClientError):
    """The job ran and did not succeed: `status` is its ResultStatus name (OTHER_ERROR,
    FATAL_ERROR, MAX_RETRY, CANCELLED, ...), `output` the error text the runner gave."""

    def __init__(self, result: JobResult) -> None:
        text = "; ".join(str(item) for item in result.output).strip()
        super().__init__(f"job {result.job_id} of worker {result.worker!r} ended with {result.status}"
                         + (f": {text}" if text else ""))
        self.result = result
        self.status = result.status
        self.output = result.output
        self.job_id = result.job_id


_BY_STATUS: dict[str, type[ClientError]] = {
    "NOT_FOUND": NotFound,
    "ALREADY_EXISTS": AlreadyExists,
    "INVALID_ARGUMENT": InvalidArgument,
    "UNAVAILABLE": Unavailable,
    "DEADLINE_EXCEEDED": DeadlineExceeded,
    "UNAUTHENTICATED": Unauthenticated,
    "RESOURCE_EXHAUSTED": ResourceExhausted,
}
# How the server says a request's worker does not exist (INVALID_ARGUMENT naming the field).
_NO_SUCH_WORKER = re.compile(r"^(?:[\w.\[\]]*\.)?worker(?:_id|_name)?: worker .* does not exist")


def from_status(code: str, message: str) -> ClientError:
    """The error for a gRPC status name and message (also used for bulk items' answers)."""
    if code == "INVALID_ARGUMENT" and _NO_SUCH_WORKER.match(message):
        return WorkerNotFound(message, code)
    return _BY_STATUS.get(code, ClientError)(f"{code}: {message}" if message else code, code)


def translate(exc: BaseException, address: str) -> ClientError | None:
    """The ClientError for an exception raised by a call to the server, or None if it is not one
    of the transport's (then the caller lets it propagate unchanged)."""
    if "grpclib" in sys.modules:
        from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

        if isinstance(exc, GRPCError):
            return from_status(exc.status.name, " ".join((exc.message or "").split()))
        if isinstance(exc, (StreamTerminatedError, ProtocolError)):
            return Unavailable(f"connection to {address} failed: {exc}")
    if isinstance(exc, asyncio.TimeoutError):  # grpclib's own deadline
        return DeadlineExceeded(f"no answer from {address} within the timeout")
    if isinstance(exc, ssl.SSLError):  # before OSError: a certificate problem is not worth retrying
        return ClientError(f"TLS with {address} failed: {exc}")
    if isinstance(exc, OSError):
        return Unavailable(f"server not reachable at {address} ({exc.strerror or exc or type(exc).__name__})")
    return None

