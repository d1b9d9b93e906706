"""One server per storage mode for the whole module: sequences share it (each uses its own
workers and cleans up after itself), and those that restart it restart it in place."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.invariants.server import InvariantServer, services_available, storage_env


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, InvariantServer]]:
    """A started server per mode, keyed by mode name.

    Sync and module-scoped, so it is set up outside the tests' trio runs (the Scalable storage
    helper runs its own). Scalable without Redis/MariaDB: absent from the dict (the test then
    skips, naming them) — except under CI=true, where that is a failure."""
    missing = services_available()
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"Scalable mode needs {missing} (.ci/run starts them)", pytrace=False)
    modes = ["standalone"] + ([] if missing else ["scalable"])
    started: dict[str, InvariantServer] = {}
    with ExitStack() as stack:
        for mode in modes:
            env = stack.enter_context(storage_env(mode))
            server = InvariantServer(tmp_path_factory.mktemp(f"invariants-{mode}"), mode, env)
            server.start_blocking()
            stack.callback(lambda s=server: s.alive() and s.stop_blocking(kill=False))
            started[mode] = server
        yield started
