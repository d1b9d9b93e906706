"""One measured row: start a driver, read the server's counters around its measured part.

The driver warms up on its own, says `ready`, and starts measuring when it reads a line; the
server trees' CPU is read right before that line is sent and right after the result arrives, and
their memory is sampled meanwhile when the row asks for it.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from perfkit import procs
from perfkit.columns import Options, Running, driver_env

SAMPLE_EVERY_S = 0.5


class RowFailed(Exception):
    """The row has no number; the message says why (shown as a footnote)."""


@dataclass
class Load:
    job: str  # noop | sleep | bulk (this server only: EnqueueBatch, `batch` jobs per call)
    callers: int
    seconds: float
    warmup_s: float
    sleep_ms: int = 10
    sample_memory: bool = False
    batch: int = 200


def measure(running: Running, load: Load, opts: Options) -> dict[str, Any]:
    command = [running.python, "-m", "perfkit.drive", running.target, "--job", load.job, "--callers",
               str(load.callers), "--seconds", str(load.seconds), "--warmup", str(load.warmup_s),
               "--port", str(running.port), "--sleep-ms", str(load.sleep_ms), "--batch", str(load.batch)]
    stderr_path = opts.workdir / f"driver-{running.target}-{load.job}-{load.callers}-{int(time.time() * 1000)}.log"
    with open(stderr_path, "wb") as stderr:
        driver = subprocess.Popen(command, env=driver_env(opts), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=stderr, text=True, cwd=Path(opts.workdir))
        try:
            return _run(driver, running, load, stderr_path)
        finally:
            if driver.poll() is None:
                driver.kill()
            driver.wait()


def _run(driver: subprocess.Popen[str], running: Running, load: Load, stderr_path: Path) -> dict[str, Any]:
    assert driver.stdout is not None and driver.stdin is not None
    lines = _lines(driver.stdout)
    _expect(lines, 120 + 3 * load.warmup_s, driver, stderr_path, "ready")
    cpu_before = procs.cpu_seconds(running.roots)
    memory = _MemorySampler(running.roots) if load.sample_memory else None
    driver.stdin.write("go\n")
    driver.stdin.flush()
    result = _expect(lines, 180 + 2 * load.seconds, driver, stderr_path, "jobs")
    server_cpu = procs.cpu_seconds(running.roots) - cpu_before
    peak = memory.stop() if memory else (0, 0)
    if result.get("error"):
        raise RowFailed(result["error"])
    jobs = result["jobs"]
    if not jobs:
        raise RowFailed("no job completed")
    return {"jobs": jobs, "elapsed_s": result["elapsed_s"], "jobs_per_s": jobs / result["elapsed_s"],
            "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
            "server_cpu_ms_per_job": server_cpu / jobs * 1000,
            "client_cpu_ms_per_job": result["client_cpu_s"] / jobs * 1000,
            "cpu_ms_per_job": (server_cpu + result["client_cpu_s"]) / jobs * 1000,
            "rss_mb": peak[0] / 2**20, "pss_mb": peak[1] / 2**20}


def _lines(stream: IO[str]) -> queue.Queue[str | None]:
    """The driver's protocol lines (`PERF {...}`), read on a thread so waits can time out."""
    found: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stream:
            if line.startswith("PERF "):
                found.put(line[5:])
        found.put(None)

    threading.Thread(target=read, daemon=True).start()
    return found


def _expect(lines: queue.Queue[str | None], timeout: float, driver: subprocess.Popen[str], stderr_path: Path,
            key: str) -> dict[str, Any]:
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise RowFailed(f"driver gave no `{key}` within {timeout:.0f} s (log: {stderr_path})") from None
    if line is None:
        tail = stderr_path.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise RowFailed(f"driver exited ({driver.wait()}): {tail[0][:200]}")
    message: dict[str, Any] = json.loads(line)
    if key not in message:
        raise RowFailed(str(message.get("error", message)))
    return message


class _MemorySampler:
    """Peak (RSS, PSS) of the trees, sampled on a thread while the row runs."""

    def __init__(self, roots: list[int]) -> None:
        self._roots = roots
        self._peak = (0, 0)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(SAMPLE_EVERY_S):
            rss, pss = procs.memory_bytes(self._roots)
            if rss > self._peak[0]:
                self._peak = (rss, pss)

    def stop(self) -> tuple[int, int]:
        self._done.set()
        self._thread.join()
        if self._peak == (0, 0):
            self._peak = procs.memory_bytes(self._roots)
        return self._peak
