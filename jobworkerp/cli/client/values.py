"""Argument value parsers for the client's options (stdlib only, so `--help` stays instant).

Each function is an argparse `type=`: it turns one command-line string into the value a command
needs, or raises `argparse.ArgumentTypeError` with a message that says what was expected.
"""

from __future__ import annotations

import argparse
import time

# Below this an --run-after-time value cannot be an absolute epoch-ms time: 10**12 ms is
# 2001-09-09, so smaller numbers are read as "milliseconds from now".
RELATIVE_TIME_LIMIT_MS = 10**12

RESPONSE_TYPES = ("NO_RESULT", "DIRECT", "LISTEN_AFTER")
QUEUE_TYPES = ("NORMAL", "WITH_BACKUP", "FORCED_RDB")
RETRY_TYPES = ("NONE", "EXPONENTIAL", "LINEAR", "CONSTANT")
# Upstream's client spelled the middle priority "middle"; both spellings are accepted.
PRIORITIES = {"high": "HIGH", "medium": "MEDIUM", "middle": "MEDIUM", "low": "LOW"}


def positive_id(text: str) -> int:
    """A runner/worker/job/result id: a positive 64-bit integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an id (expected an integer): {text!r}") from None
    if not 0 < value < 2**63:
        raise argparse.ArgumentTypeError(f"id out of range: {text}")
    return value


def non_negative_ms(text: str) -> int:
    """A duration in milliseconds (0 allowed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds as an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def non_negative_int(text: str) -> int:
    """A count such as --limit, --offset or --max-retry."""
    return non_negative_ms(text)


def positive_count(text: str) -> int:
    """A count that must be at least 1, such as --batch-size."""
    value = non_negative_ms(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def retry_basis(text: str) -> float:
    """The exponential growth factor; the server insists on >= 1.0."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number: {text!r}") from None


def worker_ref(text: str) -> int | str:
    """`--worker` is an id when it parses as an integer, else a worker name (upstream behaviour)."""
    if not text:
        raise argparse.ArgumentTypeError("worker id or name must not be empty")
    try:
        return int(text)
    except ValueError:
        return text


def id_list(text: str) -> list[int]:
    """`--next-workers 3,4` (or several values): worker ids; an empty string means none."""
    return [positive_id(part.strip()) for part in text.split(",") if part.strip()]


def priority(text: str) -> str:
    """high | medium | low (case-insensitive) -> the Priority enum member name."""
    try:
        return PRIORITIES[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected high, medium or low: {text!r}") from None


def enum_choice(choices: tuple[str, ...]):
    """Case-insensitive choice among enum names, returned upper-case."""

    def parse(text: str) -> str:
        name = text.upper()
        if name not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}: {text!r}")
        return name

    parse.__name__ = "|".join(choices)
    return parse


def run_after_time(text: str) -> int:
    """Epoch ms, or ms from now when below 10^12; 0 means "run at once". Returns epoch ms (or 0)."""
    value = non_negative_ms(text)
    if 0 < value < RELATIVE_TIME_LIMIT_MS:
        return int(time.time() * 1000) + value
    return value
