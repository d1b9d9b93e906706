"""The table `bench/perf.py` prints, and the ratios the performance targets are written in.

`results[column][row]` is a number, or a string saying why there is none; rows that do not apply
to a column (the echo server runs no jobs) are simply absent and print as a dash.
"""

from __future__ import annotations

import math
from typing import Any

COLUMNS = {
    "standalone": "Standalone",
    "scalable": "Scalable",
    "echo": "grpc echo",
    "echo_stack": "trio echo",
    "arq": "arq",
    "dramatiq": "dramatiq",
    "taskiq": "taskiq",
}
PEERS = ("arq", "dramatiq", "taskiq")
OURS = ("standalone", "scalable")
ECHOES = ("echo", "echo_stack")

# (key, label, format, better): better is "high" or "low", for choosing the best peer.
ROWS = [
    ("noop_1", "(a) no-op jobs/s, 1 caller", "{:.0f}", "high"),
    ("noop_50", "(a) no-op jobs/s, 50 callers", "{:.0f}", "high"),
    ("cpu_ms", "CPU ms / no-op job (50 callers)", "{:.3f}", "low"),
    ("p50_ms", "round trip p50 ms, 1 caller", "{:.2f}", "low"),
    ("p99_ms", "round trip p99 ms, 1 caller", "{:.2f}", "low"),
    ("sleep_100", "(c) 10 ms jobs/s, concurrency 100", "{:.0f}", "high"),
    ("rss_mb", "RSS MB at concurrency 100 (tree)", "{:.0f}", "low"),
    ("pss_mb", "PSS MB at concurrency 100 (tree)", "{:.0f}", "low"),
    ("noop_c2", "(a) no-op jobs/s, 50 callers, concurrency 2", "{:.0f}", "high"),
    ("noop_c100", "(a) no-op jobs/s, 50 callers, concurrency 100", "{:.0f}", "high"),
    ("noop_bulk", "(a) no-op jobs/s, bulk enqueue", "{:.0f}", "high"),
]
IDEAL_SLEEP_RATE = 10_000  # 100 slots / 10 ms


def number(results: dict[str, dict[str, Any]], column: str, row: str) -> float | None:
    value = results.get(column, {}).get(row)
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else None


def best_peer(results: dict[str, dict[str, Any]], row: str, better: str) -> tuple[str, float] | None:
    found = [(p, v) for p in PEERS if (v := number(results, p, row)) is not None]
    if not found:
        return None
    return (max if better == "high" else min)(found, key=lambda item: item[1])


def ratios(results: dict[str, dict[str, Any]]) -> list[tuple[str, float | None, str]]:
    """(what, ratio, note): the issue's targets, each as one number."""
    out: list[tuple[str, float | None, str]] = []

    def ratio(what: str, top: float | None, bottom: float | None, note: str = "") -> None:
        out.append((what, top / bottom if top is not None and bottom else None, note))

    ratio("(a) trio echo / echo, 50 callers", number(results, "echo_stack", "noop_50"),
          number(results, "echo", "noop_50"), "the stack's own cost")
    for ours in OURS:
        name = COLUMNS[ours]
        ratio(f"(a) {name} / echo, 50 callers", number(results, ours, "noop_50"), number(results, "echo", "noop_50"))
        ratio(f"(a) {name} / trio echo, 50 callers", number(results, ours, "noop_50"),
              number(results, "echo_stack", "noop_50"), "the job system's own cost")
        ratio(f"(a) {name} concurrency 100 / concurrency 2", number(results, ours, "noop_c100"),
              number(results, ours, "noop_c2"))
        for row, label in (("noop_1", "1 caller"), ("noop_50", "50 callers")):
            best = best_peer(results, row, "high")
            ratio(f"(a) {name} / best peer, {label}", number(results, ours, row), best and best[1],
                  best[0] if best else "no peer ran")
        best = best_peer(results, "noop_50", "high")
        ratio(f"(a) {name} bulk / best peer, 50 callers", number(results, ours, "noop_bulk"), best and best[1],
              best[0] if best else "no peer ran")
        best = best_peer(results, "cpu_ms", "low")
        ratio(f"CPU per job {name} / best peer", number(results, ours, "cpu_ms"), best and best[1],
              best[0] if best else "no peer ran")
        ratio(f"DIRECT p50 {name} / echo p50", number(results, ours, "p50_ms"), number(results, "echo", "p50_ms"))
        ratio(f"(c) {name} / ideal {IDEAL_SLEEP_RATE}/s", number(results, ours, "sleep_100"), IDEAL_SLEEP_RATE)
        best = best_peer(results, "sleep_100", "high")
        ratio(f"(c) {name} / best peer", number(results, ours, "sleep_100"), best and best[1],
              best[0] if best else "no peer ran")
    for row, label in (("noop_1", "(a) 1 caller"), ("noop_50", "(a) 50 callers"), ("p50_ms", "DIRECT p50")):
        ratio(f"Scalable / Standalone, {label}", number(results, "scalable", row), number(results, "standalone", row))
    return out


def render(results: dict[str, dict[str, Any]], columns: list[str]) -> str:
    footnotes: list[str] = []
    label_width = max(len(label) for _, label, _, _ in ROWS) + 2
    lines = ["".ljust(label_width) + "".join(COLUMNS[c].rjust(12) for c in columns)]
    for key, label, fmt, _ in ROWS:
        cells = []
        for column in columns:
            value = results.get(column, {}).get(key)
            if value is None:
                cells.append("-")
            elif isinstance(value, str):
                if value not in footnotes:
                    footnotes.append(value)
                cells.append(f"n/a [{footnotes.index(value) + 1}]")
            else:
                cells.append(fmt.format(value))
        lines.append(label.ljust(label_width) + "".join(cell.rjust(12) for cell in cells))
    lines.append("")
    lines.append("Ratios (the targets' terms):")
    for what, value, note in ratios(results):
        shown = (f"{value:.2f}" if value >= 0.1 else f"{value:.2g}") if value is not None else "n/a"
        lines.append(f"  {what.ljust(44)} {shown.rjust(8)}" + (f"  ({note})" if note else ""))
    if footnotes:
        lines.append("")
        lines.extend(f"[{i}] {text}" for i, text in enumerate(footnotes, 1))
    return "\n".join(lines)
