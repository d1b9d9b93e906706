"""What a job keeps of its trace: nothing without tracing (unless a client sent a context, which
is passed on as it came), its Enqueue span's context with tracing; checked on the queue's ticket."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jobworkerp.app import App
from jobworkerp.config import load_config
from jobworkerp.joblog import JobFields, job_context
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.storage import memory_storage
from jobworkerp.storage.memory_rdb import MemoryRepository
from jobworkerp.storage.queue import Ticket
from jobworkerp.tracing.carrier import Carrier, client_context, trace_id_of

CLIENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def queued_ticket(client_trace: Carrier | None) -> Ticket:
    """Enqueue through the use case of an App whose workers are not started: the job stays
    queued (memory storage), as Enqueue placed it."""
    repo = MemoryRepository()
    await repo.open()
    app = App(load_config({}, dotenv_path=None), memory_storage(repo))
    await app.runners.seed()
    worker_id = await app.workers.create(data.WorkerData(name="w", runner_id=data.RunnerId(value=3)))  # GRPC_UNARY
    job_id, _ = await app.jobs.enqueue(svc.JobRequest(worker_id=data.WorkerId(value=worker_id), args=b"x"),
                                       client_trace)
    ticket = await app.storage.queue.find(job_id)
    assert ticket is not None
    return ticket


async def test_without_tracing_a_job_carries_no_extras() -> None:
    assert (await queued_ticket(None)).extras is None


async def test_without_tracing_a_clients_context_is_passed_on_unchanged() -> None:
    extras = (await queued_ticket(Carrier(CLIENT, "vendor=1"))).extras
    assert extras is not None and (extras.traceparent, extras.tracestate) == (CLIENT, "vendor=1")


async def test_with_tracing_a_job_keeps_its_enqueue_spans_context(spans: InMemorySpanExporter) -> None:
    extras = (await queued_ticket(Carrier(CLIENT))).extras
    [enqueue] = spans.get_finished_spans()
    assert extras is not None
    assert extras.traceparent == f"00-{enqueue.context.trace_id:032x}-{enqueue.context.span_id:016x}-01"
    assert trace_id_of(extras) == CLIENT[3:35]
    assert enqueue.parent is not None and enqueue.parent.span_id == int(CLIENT[36:52], 16)
    assert (enqueue.attributes or {})["jobworkerp.worker.name"] == "w"


@pytest.mark.parametrize(("metadata", "expected"), [
    ({}, None),
    ({"traceparent": CLIENT}, Carrier(CLIENT)),
    ({"traceparent": CLIENT.upper(), "tracestate": "a=1"}, Carrier(CLIENT, "a=1")),
    ({"traceparent": CLIENT, "tracestate": "a" * 600}, Carrier(CLIENT)),  # too long: dropped
    ({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}, None),  # all-zero trace id
    ({"traceparent": "ff" + CLIENT[2:]}, None),  # version ff
    ({"traceparent": CLIENT + "-x"}, None),  # version 00 has exactly four fields
    ({"traceparent": "01" + CLIENT[2:] + "-later"}, Carrier("01" + CLIENT[2:] + "-later")),
    ({"traceparent": "garbage"}, None),
])
def test_client_context_takes_only_a_valid_traceparent(metadata: dict[str, str], expected: Carrier | None) -> None:
    assert client_context(metadata) == expected


def test_a_jobs_log_lines_carry_its_trace_id() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    with job_context(1, 2, "c", CLIENT[3:35]):
        JobFields().filter(record)
    assert (record.job_id, record.trace_id) == (1, CLIENT[3:35])  # type: ignore[attr-defined]
    untraced = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    with job_context(1, 2, "c"):
        JobFields().filter(untraced)
    assert not hasattr(untraced, "trace_id")


def loaded_after(imports: str) -> list[str]:
    code = f"import sys, {imports}; print(' '.join(sorted(sys.modules)))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


def test_without_tracing_nothing_of_its_sdk_is_loaded() -> None:
    """Tracing off costs no import: a runner host's preloaded modules load no OpenTelemetry at
    all, and a server not the tracing SDK or the job path's span code. (redis-py imports
    OpenTelemetry's metrics SDK by itself once that is installed: not ours to load or avoid.)"""
    assert [m for m in loaded_after("jobworkerp.runners.host, jobworkerp.runners.command")
            if m.startswith("opentelemetry")] == []
    server = loaded_after("jobworkerp.app, jobworkerp.cli.server")
    assert [m for m in server if m.startswith(("opentelemetry.sdk.trace", "jobworkerp.tracing.spans"))] == []
