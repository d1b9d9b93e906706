"""Whether a process still runs, read from /proc (tests that kill or wait for processes)."""

from __future__ import annotations

from pathlib import Path


def process_gone(pid: int) -> bool:
    """True once `pid` no longer runs: no such process, or a zombie not yet reaped (it still
    answers kill(pid, 0) but runs nothing). A process that ends between the open and the read
    of its stat file makes the read fail with ProcessLookupError: gone as well."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
