"""`job enqueue-bulk --file jobs.jsonl`: many jobs through BulkJobService.EnqueueBatch.

The file (or stdin, `-`) is read as it goes and sent in batches of `--batch-size` lines, so a file
of any length needs only one batch in memory. Every non-blank line gets one output line, in file
order: its job id, or why it was refused (by this client before sending — see `bulk_lines` — or
by the server, with the gRPC status the single Enqueue would have answered). A summary follows;
the exit status is 1 when any line failed. An error of a whole call (unreachable server, wrong
token, a batch over the server's JOB_ENQUEUE_BATCH_MAX_ITEMS) stops the run like any command:
the lines answered before it stay enqueued and were printed.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from jobworkerp.cli.client.bulk_lines import LineError, parse_line
from jobworkerp.cli.client.context import Context
from jobworkerp.cli.client.errors import EXIT_OK, EXIT_SERVER_ERROR, BadInputError
from jobworkerp.proto.jobworkerp import ext
from jobworkerp.proto.jobworkerp import service as svc

NOT_SENT = "NOT_SENT"  # the code shown for a line this client refused before sending
_ITEM_PREFIX = re.compile(r"^items\[\d+\](?:\.|: )")  # the server names the item; we name the line


@contextmanager
def _open(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdin
        return
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as e:
        raise BadInputError(f"--file: cannot read {path}: {e.strerror or e}") from None
    with handle:
        yield handle


class _Report:
    """Prints one line per item as answers arrive, and the summary."""

    def __init__(self, json_mode: bool) -> None:
        self._json = json_mode
        self.accepted = 0
        self.failed = 0

    def ok(self, line_no: int, job_id: int) -> None:
        self.accepted += 1
        self._emit({"line": line_no, "id": str(job_id)}, f"line {line_no}: {job_id}")

    def error(self, line_no: int, code: str, message: str) -> None:
        self.failed += 1
        self._emit({"line": line_no, "error": {"code": code, "message": message}},
                   f"line {line_no}: error: {code}: {message}")

    def summary(self) -> None:
        total = self.accepted + self.failed
        self._emit({"accepted": self.accepted, "failed": self.failed},
                   f"enqueued {self.accepted} of {total} jobs, {self.failed} failed")

    def _emit(self, record: dict[str, object], text: str) -> None:
        sys.stdout.write((json.dumps(record) if self._json else text) + "\n")


async def _send(ctx: Context, pending: list[tuple[int, svc.JobRequest | LineError]], report: _Report) -> None:
    requests = [item for _, item in pending if isinstance(item, svc.JobRequest)]
    results = iter((await ctx.services.bulk.enqueue_batch(ext.EnqueueBatchRequest(items=requests))).results
                   if requests else [])
    from grpclib.const import Status

    for line_no, item in pending:
        if isinstance(item, LineError):
            report.error(line_no, NOT_SENT, str(item))
            continue
        result = next(results)
        if result.id is not None:
            report.ok(line_no, result.id.value)
        else:
            error = result.error or ext.EnqueueItemError(code=Status.UNKNOWN.value, message="no answer for this item")
            report.error(line_no, Status(error.code).name, _ITEM_PREFIX.sub("", error.message))
    sys.stdout.flush()
    pending.clear()


async def enqueue_bulk(ctx: Context) -> int:
    report = _Report(ctx.out.json_mode)
    pending: list[tuple[int, svc.JobRequest | LineError]] = []
    with _open(ctx.args.file) as lines:
        for line_no, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                pending.append((line_no, await parse_line(ctx.lookup, text)))
            except LineError as e:
                pending.append((line_no, e))
            if len(pending) >= ctx.args.batch_size:
                await _send(ctx, pending, report)
        await _send(ctx, pending, report)
    report.summary()
    return EXIT_OK if report.failed == 0 else EXIT_SERVER_ERROR
