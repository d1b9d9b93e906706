"""One server per storage mode for the whole module: sequences share it (each uses its own
workers and cleans up after itself), and those that restart it restart it in place."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.invariants.server import InvariantServer, services_available, storage_env


def _server(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[InvariantServer]:
    if mode == "scalable" and (missing := services_available()):
        message = f"Scalable mode needs {missing} (start them with .ci/run's commands)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)  # CI must not shrink the suite silently
        pytest.skip(message)
    with storage_env(mode) as env:
        server = InvariantServer(tmp_path_factory.mktemp(f"invariants-{mode}"), mode, env)
        server.start_blocking()
        try:
            yield server
        finally:
            if server.alive():
                server.stop_blocking(kill=False)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InvariantServer]:
    """The server of the mode the test is parametrized with (indirectly: `server` = mode name).

    A sync fixture requested by parametrization, so it is set up outside the test's trio run
    (the Scalable storage helper runs its own)."""
    yield from _server(tmp_path_factory, request.param)
