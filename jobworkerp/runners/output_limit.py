"""JOB_OUTPUT_MAX_BYTES inside the runner host: how much output one job may produce.

Why: a job's output is held in the runner host, pickled across the pipe to the server, stored as
a result row, published to Redis and sent to every waiter. Unbounded, one `cat /dev/zero` (or a
huge HTTP body, or endless container logs) takes the host's memory, then the server's, then the
database's. Runners that read output as it comes (COMMAND stdout, HTTP bodies, Docker logs) stop
reading at the limit, so a huge output never crosses the pipe; `run_job` checks every runner's
items (plugins and GRPC_UNARY included) before they leave the host.

A job over the limit fails with OTHER_ERROR naming the limit and the setting, rather than
succeeding with its output cut: a job system's user would rather get a clear failure than data
silently truncated (a cut JSON document, a half CSV export that looks whole). OTHER_ERROR, not a
retry: the same job would most likely produce the same output again.

The server hands its hosts the value it resolved (`policy.host_environment`), as for the runner
policy; a runner used outside a pool reads its own environment (default 8 MiB).
"""

from __future__ import annotations

from collections.abc import Sequence

from jobworkerp.config import ConfigError, environment_config
from jobworkerp.runners.base import FatalError, OtherError

SETTING = "JOB_OUTPUT_MAX_BYTES"


class OutputTooLarge(OtherError):
    """A job's output passed JOB_OUTPUT_MAX_BYTES; the message says what and how to change it."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} is larger than {SETTING} ({limit} bytes): reading stopped there and the job "
                         f"failed rather than return a truncated output. Make the job write less (e.g. to a "
                         f"file), or raise {SETTING} on the server")
        self.limit = limit


def output_limit() -> int:
    """JOB_OUTPUT_MAX_BYTES as this process's environment sets it (default 8 MiB).

    Read per job, as the runner policy is; a malformed value is a FatalError (the setting is
    broken, not the job), though a server never starts with one and so never hands one over.
    """
    try:
        return environment_config().job_output_max_bytes
    except ConfigError as e:
        raise FatalError(str(e)) from None


class CappedBuffer:
    """Bytes read so far of one output, refusing to grow past `limit`.

    `add` raises OutputTooLarge as soon as the total passes the limit, so a reader stops there
    holding at most `limit` bytes plus the chunk that crossed it.
    """

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self.data = bytearray()

    def add(self, chunk: bytes | memoryview) -> None:
        if len(self.data) + len(chunk) > self.limit:
            raise OutputTooLarge(self.what, self.limit)
        self.data += chunk


def check_output(items: Sequence[bytes], limit: int, what: str) -> None:
    """Refuse output items whose total size passes `limit` (the result's output as stored)."""
    if sum(len(item) for item in items) > limit:
        raise OutputTooLarge(what, limit)
