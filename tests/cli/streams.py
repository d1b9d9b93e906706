"""Reading a background CLI's output line by line with a deadline (no sleeps, no hangs)."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from typing import Any


class LineReader:
    """Pumps a process's stdout into a queue from a daemon thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next_json(self, timeout: float) -> Any | None:
        """The next JSON line, or None when nothing arrives within `timeout` seconds (or the output ended)."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return None
        return None if line is None else json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=10)
