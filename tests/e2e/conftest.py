from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobworkerp.testing.server import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with the default channel (concurrency 4) and a channel `single` (concurrency 1)."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("server"),
        {"WORKER_CHANNELS": "single", "WORKER_CHANNEL_CONCURRENCIES": "1"},
    ).start()
    yield proc
    assert proc.stop() == 0, proc.log()
