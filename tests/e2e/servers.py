"""One all-in-one server per storage mode, so the end-to-end fixtures can run the same tests against
Standalone (SQLite + in-memory queues) and Scalable (MariaDB + Redis) storage."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

from jobworkerp.testing.server import ServerProcess
from tests.scalable.services import scalable_env

STORAGE_MODES = ["standalone", "scalable"]
# scalable_env() also tunes the multi-process clusters it was made for; here the two modes run with
# the same settings and differ only in storage (test_bad_input's periodic_interval=1000 is refused
# only with the default fetch interval of 1000 ms, for one).
CLUSTER_TUNING = ("JOB_QUEUE_FETCH_INTERVAL", "WORKER_DEFAULT_CONCURRENCY")


@contextmanager
def server_in_mode(mode: str, workdir: Path, env: Mapping[str, str]) -> Iterator[ServerProcess]:
    """A started all-in-one server with `env`, stopped (exit code 0) afterwards. "scalable" adds
    `scalable_env()` (but its CLUSTER_TUNING) under `env`: a fresh MariaDB database and Redis key
    prefix, dropped afterwards (Redis or MariaDB down fails the test, never skips it)."""
    with ExitStack() as stack:
        if mode == "scalable":
            scalable = stack.enter_context(scalable_env())
            env = {**{k: v for k, v in scalable.items() if k not in CLUSTER_TUNING}, **env}
        elif mode != "standalone":
            raise ValueError(f"unknown storage mode {mode!r}")
        proc = ServerProcess(workdir, env).start()
        yield proc
        assert proc.stop() == 0, proc.log()
