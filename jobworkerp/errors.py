"""Domain errors raised by the core and mapped to gRPC status codes by the front.

Every error names the offending field or object, so a client can tell what to fix
without reading server logs.
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class JobworkerpError(Exception):
    """Base of every error the front turns into a non-INTERNAL gRPC status."""


class InvalidArgument(JobworkerpError):
    """A request field is missing or malformed (gRPC INVALID_ARGUMENT)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFound(JobworkerpError):
    """The named object does not exist (gRPC NOT_FOUND)."""


class AlreadyExists(JobworkerpError):
    """A unique key (worker name, job uniq_key) is taken (gRPC ALREADY_EXISTS)."""


class Unavailable(JobworkerpError):
    """Storage or a dependency cannot serve the request now (gRPC UNAVAILABLE)."""


class StorageClosed(Unavailable):
    """This process has closed its storage (it is stopping): unlike an outage, waiting does not
    help, so loops that wait outages out give up at once (a request that slipped in after the
    front stopped retried against a closed database for a minute, keeping the process up)."""


class ResourceExhausted(JobworkerpError):
    """A limit is reached, e.g. a channel's queue is full (gRPC RESOURCE_EXHAUSTED)."""


class DeadlineExceeded(JobworkerpError):
    """A wait (DIRECT result, Listen) ran out of time (gRPC DEADLINE_EXCEEDED)."""


def is_outage(error: BaseException) -> bool:
    """A failure to reach storage — Redis or the database restarting, unreachable or cut off —
    as opposed to a wrong request or a bug: loops wait it out, the front answers UNAVAILABLE."""
    if isinstance(error, StorageClosed):
        return False
    return isinstance(error, (Unavailable, OSError, RedisConnectionError, RedisTimeoutError))
