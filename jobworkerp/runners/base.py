"""The Runner contract and the errors a runner uses to say how a job failed.

A runner runs inside a runner host subprocess (never in the server process), so its methods
are plain synchronous code. By default a host runs one job at a time. A runner class that sets
`concurrent = True` has its jobs run together in one shared host, each on a thread of its own,
which suits work that waits outside Python (a child process, a socket): it must then be
thread-safe across instances, and its `cancel()` must end a run from another thread.

The error class a runner raises decides the job's ResultStatus; any other exception counts as
OTHER_ERROR.
"""

from __future__ import annotations

import signal
from typing import ClassVar, Protocol

from jobworkerp.proto.jobworkerp.data import ResultStatus, RunnerType


class Runner(Protocol):
    name: ClassVar[str]
    runner_type: ClassVar[RunnerType]
    settings_proto: ClassVar[str]  # .proto text; its first message is the settings type
    args_proto: ClassVar[str]  # .proto text; its first message is the args type
    result_proto: ClassVar[str | None]  # .proto text of output items; None/"" = raw bytes
    # Optional (default False): jobs may run at once, on threads of one shared host.
    concurrent: ClassVar[bool]

    def load(self, settings: bytes) -> None:
        """Parse settings and prepare (connect, check the executable...). Errors here are FATAL."""

    def run(self, args: bytes) -> list[bytes]:
        """Run one job and return its output items."""

    def cancel(self) -> None:
        """Stop a run in progress, or reset state before a static runner is reused."""


class RunnerError(Exception):
    """A failure whose ResultStatus the runner chose."""

    status: ClassVar[ResultStatus] = ResultStatus.OTHER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RetryableError(RunnerError):
    """Transient failure: worth another attempt (ERROR_AND_RETRY)."""

    status = ResultStatus.ERROR_AND_RETRY


class FatalError(RunnerError):
    """Will fail the same way every time (FATAL_ERROR), e.g. unusable settings."""

    status = ResultStatus.FATAL_ERROR


class AbortError(RunnerError):
    """The call was cancelled or aborted on the far side (ABORT)."""

    status = ResultStatus.ABORT


class OtherError(RunnerError):
    """Bad arguments or another non-retryable failure (OTHER_ERROR)."""

    status = ResultStatus.OTHER_ERROR


class RunnerLoadError(FatalError):
    """The runner could not be created or loaded with the worker's settings."""


def describe_exit(returncode: int) -> str:
    """A process's return code in words: "exit code 3" or "killed by signal SIGKILL (-9)"."""
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name} ({returncode})"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
