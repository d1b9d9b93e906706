"""A headless Chromium for the tests that need a real browser (the dashboard, grpc-web).

The browser is Debian's `chromium` driven by Playwright (`executable_path`; Playwright's own
browser downloads are never used). Without it the browser tests are skipped on a developer's
machine, but fail under CI=true: .ci/run installs it, and a CI that silently skipped them would
hide a broken page.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


@contextmanager
def plain_asyncio_loops() -> Iterator[None]:
    """Playwright's sync API makes an asyncio loop of its own. Once trio_asyncio is imported (the
    server code and other tests import it), the global policy makes trio-asyncio loops, which do
    not survive Playwright's greenlets and then leave a trio run behind that breaks every later
    test of the process. A policy set in this thread is asyncio's default one again."""
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(None)


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A launched Playwright browser; skips (fails under CI=true) without chromium or Playwright."""
    path = chromium_path()
    if path is None:
        message = "no chromium (apt-get install -y chromium; .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("playwright is not installed (the dev extra has it)")
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    with plain_asyncio_loops(), sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield launched
        finally:
            launched.close()
