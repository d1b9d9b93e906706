"""What the private servers of the chaos tests (redis_instance.py, mariadb_instance.py) share:
waiting for a freshly started server to answer, and stopping it cleanly."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


def wait_until_answering(proc: subprocess.Popen[bytes], answers: Callable[[], bool], what: str,
                         log_tail: Callable[[], str], timeout_s: float) -> None:
    """Poll `answers` until it says yes; fail with the server's own log if it exits first, or
    after `timeout_s` (a hang guard: a slow machine only waits longer)."""
    deadline = time.monotonic() + timeout_s
    while not answers():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {timeout_s} s: {log_tail()}")
        time.sleep(0.05)


def stop_cleanly(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """SIGTERM and wait: the server's own clean shutdown (flushes what it must)."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=timeout_s)
