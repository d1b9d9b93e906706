"""A real all-in-one server with its dashboard on a free port, and a headless Chromium.

The browser comes from tests/browser.py (Debian's `chromium`, driven by Playwright).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobworkerp.testing.server import ServerProcess
from tests.browser import headless_chromium

TOKEN = "dashboard-test-token"


@pytest.fixture(scope="module")
def dashboard_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Standalone all-in-one with AUTH_TOKEN and the dashboard on a free port."""
    workdir: Path = tmp_path_factory.mktemp("dashboard")
    proc = ServerProcess(workdir, {"AUTH_TOKEN": TOKEN, "WORKER_DEFAULT_CONCURRENCY": "2"}, dashboard=True).start()
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as launched:
        yield launched
