"""CPU time and memory of process trees, read from /proc (Linux).

A system under test is one or more root processes plus everything they started (runner hosts,
dramatiq's and taskiq's worker processes), so every figure is a sum over the trees. Processes that
exit between two readings take their CPU with them; in these benchmarks none is meant to.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return raw[raw.rindex(")") + 2:].split()


def tree(roots: Iterable[int]) -> list[int]:
    """The roots and all their descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    pending = [pid for pid in roots if os.path.exists(f"/proc/{pid}")]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


def cpu_seconds(roots: Iterable[int]) -> float:
    """User + system CPU of the trees so far (reaped children's time included)."""
    total = 0
    for pid in tree(roots):
        fields = _stat_fields(pid)
        if fields is not None:  # fields[11:15]: utime, stime, cutime, cstime
            total += sum(int(v) for v in fields[11:15])
    return total / _TICKS


def memory_bytes(roots: Iterable[int]) -> tuple[int, int]:
    """(RSS, PSS) summed over the trees. RSS counts pages shared between processes once per
    process; PSS splits them, so it is the tree's fair share of physical memory."""
    rss = pss = 0
    for pid in tree(roots):
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss += int(f.read().split()[1]) * _PAGE
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            continue
    return rss, pss
