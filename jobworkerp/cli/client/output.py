"""Printing records: rich tables for people, one JSON object per line for programs.

A record is the dict from `present`; this module only decides how it looks. In tables, a time `x`
with its `x_iso` sibling becomes one cell "ms (iso)", nested values become compact JSON, and all
text is shown literally (never parsed as rich markup).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

Record = dict[str, Any]


class Output:
    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        self._console: Any = None

    # ---------------------------------------------------------------- public API used by commands

    def record(self, record: Record, title: str) -> None:
        """One entity: a JSON line, or a two-column field/value table."""
        if self.json_mode:
            self._json(record)
            return
        from rich.table import Table

        table = Table(show_header=False)
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold")
        for key, value in _cells(record):
            table.add_row(key, self._text(value))
        self._print_titled(title, table)

    def records(self, records: Sequence[Record], title: str, columns: Sequence[str]) -> None:
        """A list: JSON lines (all fields), or one table with the given columns."""
        if self.json_mode:
            for record in records:
                self._json(record)
            return
        from rich.table import Table

        table = Table()
        for column in columns:
            table.add_column(column, overflow="fold", no_wrap=column in ("id", "job_id", "worker_id"))
        for record in records:
            cells = dict(_cells(record))
            table.add_row(*(self._text(cells.get(c)) for c in columns))
        self._print_titled(f"{title} ({len(records)})", table)

    def value(self, key: str, value: Any, title: str) -> None:
        """A single answer such as a count or a success flag."""
        if self.json_mode:
            self._json({key: value})
        else:
            self._print(f"{title}: {_plain(value)}")

    def chunk(self, data: bytes) -> None:
        """A chunk of a job's output, printed the moment it arrives: as is (so a command's output
        reads as if it ran here), or a JSON line `{"data": text}` (`{"data": {"base64": ...}}`
        when it is not UTF-8)."""
        if self.json_mode:
            from jobworkerp.client.protocodec import raw_value

            self._json({"data": raw_value(data)})
            return
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    def dropped(self, count: int) -> None:
        """Chunks the server no longer had for this listener: a JSON line, or a note on stderr."""
        if self.json_mode:
            self._json({"dropped": count})
            return
        print(f"[{count} chunk(s) of output dropped here: the server keeps a bounded part of a job's output "
              f"(JOB_STREAM_MAX_CHUNKS, JOB_STREAM_MAX_BYTES); the result below has it all]", file=sys.stderr,
              flush=True)

    # ------------------------------------------------------------------------------- internals

    def _json(self, record: Record) -> None:
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def _print_titled(self, title: str, table: Any) -> None:
        """The title on its own line: a table's own title would wrap to the width of a narrow table."""
        from rich.text import Text

        self._print(Text(title, style="bold"))
        self._print(table)

    def _print(self, renderable: Any) -> None:
        if self._console is None:
            from rich.console import Console

            # Not a terminal (a pipe or file): no colour, and room enough that tables do not fold early.
            tty = sys.stdout.isatty()
            self._console = Console(highlight=False, markup=False, width=None if tty else 160)
        self._console.print(renderable)
        sys.stdout.flush()

    @staticmethod
    def _text(value: Any) -> Any:
        from rich.text import Text

        return Text(_plain(value))


def _cells(record: Record) -> list[tuple[str, Any]]:
    """Fold each `x_iso` into its `x`: "1700000000000 (2023-11-14T...)"; unset times become None."""
    cells: list[tuple[str, Any]] = []
    for key, value in record.items():
        if key.endswith("_iso") and key[:-4] in record:
            continue
        if f"{key}_iso" in record:
            stamp = record[f"{key}_iso"]
            value = f"{value} ({stamp})" if stamp else None
        cells.append((key, value))
    return cells


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.rstrip("\n")
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        if not value:
            return "-"
        return "\n".join(v.rstrip("\n") for v in value) if any("\n" in v for v in value) else ", ".join(value)
    return json.dumps(value, ensure_ascii=False)
