from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobworkerp.testing.server import ServerProcess
from tests.e2e.servers import STORAGE_MODES, server_in_mode


@pytest.fixture(scope="module", params=STORAGE_MODES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with the default channel (concurrency 4) and a channel `single` (concurrency 1),
    once per storage mode (Standalone, Scalable)."""
    env = {"WORKER_CHANNELS": "single", "WORKER_CHANNEL_CONCURRENCIES": "1"}
    with server_in_mode(request.param, tmp_path_factory.mktemp(f"server-{request.param}"), env) as proc:
        yield proc
