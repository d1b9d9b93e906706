"""The client's view of runners, workers and results: plain dataclasses with decoded payloads.

Enum values are their names as strings ("DIRECT", "SUCCESS"), times epoch milliseconds as on the
wire, and the protobuf message each came from stays available as `raw` for anything not shown.

Decoded payloads follow one rule (settings, args and output alike): through the runner's message
when it publishes one (a JSON-ready dict, protobuf's JSON mapping with proto field names: bytes
fields base64, 64-bit integers as strings), else the raw `bytes`. The output of a failed job is
the runner's error text (`str`), never decoded as a result message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobworkerp.client.errors import JobFailed
from jobworkerp.proto.jobworkerp import data


@dataclass(frozen=True)
class Runner:
    id: int
    name: str
    type: str  # RunnerType name: COMMAND, HTTP_REQUEST, GRPC_UNARY, DOCKER, PLUGIN
    settings_proto: str  # .proto text; the first message is the worker settings ("" = raw bytes)
    args_proto: str  # .proto text; the first message is the job args ("" = raw bytes)
    result_proto: str | None  # .proto text of each output item (None/"" = raw bytes)


@dataclass(frozen=True)
class RetryPolicy:
    """How a worker retries a job that failed retryably (ERROR_AND_RETRY)."""

    type: str = "EXPONENTIAL"  # NONE, EXPONENTIAL, LINEAR, CONSTANT
    interval_ms: int = 1000
    max_interval_ms: int = 0
    max_retry: int = 3
    basis: float = 2.0


@dataclass(frozen=True)
class Worker:
    id: int
    name: str
    runner: Runner
    settings: Any  # decoded (see the module's rule)
    response_type: str  # NO_RESULT, DIRECT, LISTEN_AFTER
    queue_type: str  # NORMAL, WITH_BACKUP, FORCED_RDB
    channel: str | None
    periodic_interval_ms: int
    store_success: bool
    store_failure: bool
    use_static: bool
    next_workers: tuple[int, ...]
    retry: RetryPolicy | None
    raw: data.Worker = field(repr=False, compare=False)


@dataclass(frozen=True)
class JobResult:
    """A job's final result."""

    id: int  # the result's own id (0 when it was not stored)
    job_id: int
    worker: str  # the worker's name
    status: str  # ResultStatus name: SUCCESS, ERROR_AND_RETRY, FATAL_ERROR, ABORT, CANCELLED, MAX_RETRY, ...
    output: list[Any]  # decoded items (see the module's rule)
    retried: int
    start_time: int  # epoch ms
    end_time: int
    raw: data.JobResult = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS"

    def raise_for_status(self) -> JobResult:
        """This result if it succeeded, else raise JobFailed carrying it."""
        if not self.ok:
            raise JobFailed(self)
        return self
