"""Which job a log line is about, for JSON logs: job id, worker id, channel and trace id.

Why: a log collector filters by field, and "job 123" inside a message is not a field. The channel
worker runs each job in a task of its own (worker/channel.py) and sets the job there, in a
context variable; trio gives every task its own copy of the context, so whatever that task (and
the tasks it starts) logs carries the job's fields, without each log call passing them. A log
call may still pass them itself (`extra={"job_id": ...}`): those win. The trace id is there when
the job carries a trace context (jobworkerp/tracing/), so a log line leads to the job's trace.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

FIELDS = ("job_id", "worker_id", "channel", "trace_id")
_current: ContextVar[dict[str, object] | None] = ContextVar("jobworkerp_job", default=None)


@contextmanager
def job_context(job_id: int, worker_id: int, channel: str, trace_id: str | None = None) -> Iterator[None]:
    """Log lines of the current task (and the tasks it starts) are about this job."""
    fields: dict[str, object] = {"job_id": job_id, "worker_id": worker_id, "channel": channel}
    if trace_id is not None:
        fields["trace_id"] = trace_id
    token = _current.set(fields)
    try:
        yield
    finally:
        _current.reset(token)


class JobFields(logging.Filter):
    """A handler filter that puts the current job's fields on each record that has none of its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = _current.get()
        if job is not None:
            for name, value in job.items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        return True


def job_fields(record: logging.LogRecord) -> dict[str, object]:
    """The job fields a record carries (from JobFields or `extra=`)."""
    return {name: getattr(record, name) for name in FIELDS if getattr(record, name, None) is not None}
