"""The metrics that are counted as things happen: jobs enqueued, started and finished, how long
they ran and waited (the job lifecycle's observer, `lifecycle/observer.py`), and gRPC calls.

Each event costs a dict lookup or two (label children are made once, on first use, and kept)
and an increment or an observation. Children are made on first use rather than up front, so a
process shows only what it does: a Scalable front counts enqueued jobs, its workers the rest.
"""

from __future__ import annotations

from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Histogram

from jobworkerp.clock import now_ms
from jobworkerp.lifecycle.placement import channel_of
from jobworkerp.proto.jobworkerp import data

# Seconds. Jobs take from milliseconds (an echo) to hours (the default timeout is one hour), and
# wait in a queue from microseconds to however long the channel is behind.
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
NO_CHANNEL = ""  # the channel of a job whose worker no longer exists

_STATUS_NAMES = {int(status): status.name for status in data.ResultStatus}


class _Children:
    """One metric's label children by label values: `.labels()` formats and checks its labels
    on every call, a dict lookup does not."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Counter | Histogram) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def of(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._metric.labels(*labels)
        return child


def _worker_labels(worker: data.Worker) -> tuple[str, str]:
    wd = cast(data.WorkerData, worker.data)  # a stored worker always has its data
    return wd.name, channel_of(wd)


def _result_labels(result: data.JobResult, worker: data.Worker | None) -> tuple[str, str]:
    if worker is not None:
        return _worker_labels(worker)
    return result.data.worker_name, NO_CHANNEL


class JobMetrics:
    """Counts and times jobs, as the lifecycle reports them (a `JobObserver`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("worker", "channel")
        self._enqueued = _Children(Counter(
            "jobworkerp_jobs_enqueued", "Jobs accepted (Enqueue, next_workers chains)", labels, registry=registry))
        self._started = _Children(Counter(
            "jobworkerp_jobs_started", "Runs started (each retry and each periodic run is one)", labels,
            registry=registry))
        self._finished = _Children(Counter(
            "jobworkerp_jobs_finished", "Jobs ended, by the status of their final result", (*labels, "status"),
            registry=registry))
        self._duration = _Children(Histogram(
            "jobworkerp_job_duration_seconds", "How long a run took", labels, buckets=SECONDS_BUCKETS,
            registry=registry))
        self._wait = _Children(Histogram(
            "jobworkerp_job_queue_wait_seconds", "From when a run was due (enqueued, or its run_after_time) "
            "until it started", labels, buckets=SECONDS_BUCKETS, registry=registry))

    # --- JobObserver -----------------------------------------------------------------------------
    def enqueued(self, job: data.Job, worker: data.Worker) -> None:
        self._enqueued.of(*_worker_labels(worker)).inc()

    def started(self, job: data.Job, worker: data.Worker) -> None:
        labels = _worker_labels(worker)
        self._started.of(*labels).inc()
        jd = job.data
        # Due at enqueue, or at its run_after_time (a scheduled job, a retry's backoff, a
        # periodic run): time spent waiting for that moment is not time spent in a queue.
        self._wait.of(*labels).observe(max(0, now_ms() - max(jd.enqueue_time, jd.run_after_time)) / 1000)

    def ran(self, result: data.JobResult, worker: data.Worker | None) -> None:
        rd = result.data
        self._duration.of(*_result_labels(result, worker)).observe(max(0, rd.end_time - rd.start_time) / 1000)

    def ended(self, result: data.JobResult, worker: data.Worker | None) -> None:
        status = int(result.data.status)
        self._finished.of(*_result_labels(result, worker), _STATUS_NAMES.get(status) or str(status)).inc()


class GrpcMetrics:
    """gRPC calls answered on GRPC_ADDR, by method and status code (front/call_counts.py)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._calls = _Children(Counter("jobworkerp_grpc_calls", "gRPC calls answered, by method and status code",
                                        ("method", "code"), registry=registry))

    def call(self, method: str, code: str) -> None:
        """Count one answered call (methods are the server's own: a bounded set of labels)."""
        self._calls.of(method, code).inc()
