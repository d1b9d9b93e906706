"""Streaming output inside a runner host: how a running job's output is cut into chunks.

A job enqueued for streaming (JobStreamService, `usecase/output_streams.py`) runs with a caller
that takes what the runner emits (`actors.hosted.emit`); for every other job `emitting()` is
False and runners do none of this. Chunks are cut here, in the host, so the server side never
has to re-cut them:

* COMMAND: one chunk per line of stdout, newline included, sent as soon as the line is complete
  (a command that prints three lines 300 ms apart gives three chunks); what follows the last
  newline is sent when stdout closes;
* plugins: one chunk per item their `run_stream` yields (`runners/plugins.py`);

and any chunk longer than CHUNK_MAX_BYTES is sent as several of at most that size, so one long
line (or one huge yielded item) never becomes one huge frame, Redis entry or gRPC message. The
job's result is unchanged by streaming: its output items are the same whole output as a job not
streamed gets, and JOB_OUTPUT_MAX_BYTES bounds the chunks of a run as it bounds that output.
"""

from __future__ import annotations

from collections.abc import Callable

from actors.hosted import emit

CHUNK_MAX_BYTES = 64 * 1024


def emit_piecewise(chunk: bytes, send: Callable[[bytes], None] = emit) -> None:
    """Send `chunk` in pieces of at most CHUNK_MAX_BYTES."""
    if len(chunk) <= CHUNK_MAX_BYTES:
        send(chunk)
        return
    view = memoryview(chunk)
    for start in range(0, len(chunk), CHUNK_MAX_BYTES):
        send(bytes(view[start:start + CHUNK_MAX_BYTES]))


class LineChunks:
    """Cuts a byte stream that arrives in arbitrary reads into one chunk per complete line.

    `feed` each read as it comes: every line it completes is sent at once; an incomplete line is
    kept until its newline comes (or, past CHUNK_MAX_BYTES, sent in full-size pieces, so a stream
    without newlines is still sent as it comes and the kept part stays small). `close` sends what
    is left at the end of the stream.
    """

    def __init__(self, send: Callable[[bytes], None] = emit) -> None:
        self._send = send
        self._partial = bytearray()

    def feed(self, data: bytes) -> None:
        start = 0
        partial = self._partial
        while (end := data.find(b"\n", start)) >= 0:
            if partial:
                partial += data[start:end + 1]
                emit_piecewise(bytes(partial), self._send)
                partial.clear()
            else:
                emit_piecewise(data[start:end + 1], self._send)
            start = end + 1
        if start < len(data):
            partial += data[start:]
            while len(partial) >= CHUNK_MAX_BYTES:
                self._send(bytes(partial[:CHUNK_MAX_BYTES]))
                del partial[:CHUNK_MAX_BYTES]

    def close(self) -> None:
        if self._partial:
            self._send(bytes(self._partial))
            self._partial.clear()
