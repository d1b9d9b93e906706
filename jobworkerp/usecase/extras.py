"""What a new job keeps beyond the v0.7 message (`jobworkerp.ext.JobExtras`), decided at enqueue.

One place builds them (`Jobs._enqueue_to` calls `job_extras` once per job, for Enqueue,
EnqueueBatch and EnqueueForStream alike), so each feature adds its field here rather than
building its own message: a job has one JobExtras, carried by its queue entry and row through
retries and re-runs (`storage/queue.py`). None when nothing is set: most jobs carry no extras and
pay nothing for them.
"""

from __future__ import annotations

from jobworkerp.proto.jobworkerp.ext import JobExtras


def job_extras(traced: JobExtras | None, *, stream_output: bool = False) -> JobExtras | None:
    """The extras of a job being enqueued, or None when it needs none.

    `traced`: the extras holding the job's trace context (`Jobs._enqueue_to`'s TraceOrigin), if
    any. `stream_output`: the client asked for the job's output as it is produced
    (JobStreamService); the runner then sends it, and the worker writes it to the job's output
    stream.
    """
    if not stream_output:
        return traced
    if traced is None:
        return JobExtras(stream_output=True)
    # A copy: the trace's extras may be shared by the jobs of one batch.
    return JobExtras(traceparent=traced.traceparent, tracestate=traced.tracestate, stream_output=True)
