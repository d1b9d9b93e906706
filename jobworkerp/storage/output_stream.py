"""Streaming output between the process running a job and the listeners of its output.

A job enqueued for streaming (its `JobExtras.stream_output`) has an *output stream*: numbered
entries, each a chunk of output or an end marker, written by the process running the job
(`OutputWriter`, one per attempt) and read by any number of listeners (`OutputFeed`), who may
come before the job runs, while it runs, or shortly after it ended:

* Standalone keeps it in memory (`memory_output.py`), Scalable in a Redis stream per job that the
  worker process writes and the front process reads (`redis_output.py`);
* every entry has the next number `n` of its job's stream, assigned by the writer, so a listener
  sees exactly what it missed: chunks dropped to keep a stream within its bounds (the oldest, when
  a stream holds more than `OutputBounds` allows; the newest, while Redis takes them slower than
  the job produces them) leave gaps in the numbers, which `Cursor` turns into one `dropped` item;
* retries append to the same stream (the numbers go on, in whatever process runs the attempt);
  the end marker is written only when the job's result is about to be published — and before it
  is, so a listener who has the result has every chunk that was kept. A run that starts after an
  end marker (a periodic job's next run) starts a fresh stream;
* a stream is dropped `keep_s` after its end marker, and at the latest a day after its last
  write (a job that ended without one: given up, or its worker process died).

Listeners end on the job's result from the result bus (`usecase/output_streams.py`), not on the
end marker, so a job that ends without a run (deleted while queued) still ends its listeners.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.ext import JobOutputItem

# How long a stream without an end marker is kept after its last write: a job running that long
# without output, or one whose run ended without an end marker, loses its replay after it.
UNENDED_KEEP_S = 86_400.0

Entry = tuple[int, bytes | None]  # (n, chunk); a None chunk is the end marker


@dataclass(frozen=True)
class OutputBounds:
    """How much of one job's output stream is kept for its listeners (JOB_STREAM_MAX_CHUNKS,
    JOB_STREAM_MAX_BYTES), and for how long after the job ended (JOB_STREAM_KEEP_SECONDS)."""

    max_chunks: int = 1024
    max_bytes: int = 8 * 1024 * 1024
    keep_s: float = 60.0


class Cursor:
    """One listener's place in a stream: turns the entries it is handed into items, in order,
    with a `dropped` item for every run of numbers it never got, and skips what it has seen
    (entries may be handed over twice: a replay that overlaps what was already delivered)."""

    __slots__ = ("ended", "seen")

    def __init__(self) -> None:
        self.seen = 0  # the number of the last entry taken
        self.ended = False  # the end marker was taken: nothing follows

    def items(self, entries: Iterable[Entry]) -> list[JobOutputItem]:
        out: list[JobOutputItem] = []
        for n, chunk in entries:
            if self.ended:
                break
            if n <= self.seen:
                continue
            if n > self.seen + 1:
                out.append(JobOutputItem(dropped=n - self.seen - 1))
            self.seen = n
            if chunk is None:
                self.ended = True
            else:
                out.append(JobOutputItem(data=chunk))
        return out


class OutputWriter(Protocol):
    """The output stream of one attempt of one job, in the process running it."""

    def emit(self, chunk: bytes) -> None:
        """Append a chunk now (called by the runner pool's reader task: never blocks)."""

    async def flush(self) -> None:
        """Wait until every chunk emitted so far is where listeners read it (bounded: a chunk
        storage does not take in time is lost, seen as dropped)."""

    async def end(self, result: data.JobResult) -> None:
        """Write the end marker, before `result` is published; waits until it is written."""


class OutputFeed(Protocol):
    """One listener's view of a job's output stream."""

    @property
    def ended(self) -> bool:
        """The end marker was taken: no more chunks will come."""

    def take(self) -> list[JobOutputItem]:
        """The chunks (and `dropped` markers) that arrived since the last take."""

    async def wait(self) -> None:
        """Return once `take` has something, or the feed has ended."""

    async def rest(self) -> list[JobOutputItem]:
        """Once the job's result is published: everything left up to the end marker (which was
        written before the result, so nothing more can come)."""


class OutputStreams(Protocol):
    """Where jobs' output streams live, in one storage mode."""

    async def writer(self, job_id: int) -> OutputWriter:
        """The stream an attempt of the job writes to (fresh after an end marker)."""

    def follow(self, job_id: int) -> AbstractAsyncContextManager[OutputFeed]:
        """Read the job's stream from its oldest kept entry on, also before it has any."""

    async def ended_result(self, job_id: int) -> data.JobResult | None:
        """The job's final result for a listener who came after it was published, when this
        storage still has it (beyond a stored result row)."""
