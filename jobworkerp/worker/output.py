"""The output stream of a job enqueued for streaming, as the executor writes it.

Only a job whose `JobExtras` ask for it (`stream_output`, set by JobStreamService) gets a
writer; for every other job this is None, its run passes no `on_emit` to the runner pool, the
runner host sends no chunk frames, and nothing more is written to storage: jobs not streamed pay
nothing for the feature. The executor hands the writer's `emit` to the pool, flushes it before a
retry is placed (so an attempt's chunks land before the next attempt's), and writes its end
marker right before the job's result is published (`storage/output_stream.py`).
"""

from __future__ import annotations

from jobworkerp.storage import Storage
from jobworkerp.storage.output_stream import OutputWriter
from jobworkerp.storage.queue import Ticket


async def open_output(storage: Storage, ticket: Ticket) -> OutputWriter | None:
    """This attempt's writer of the job's output stream, or None when the job is not streamed."""
    extras = ticket.extras
    if extras is None or not extras.stream_output:
        return None
    return await storage.output.writer(ticket.job_id)
