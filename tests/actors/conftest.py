"""Fixtures for the actors tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.actors.fifo_inbox import FifoInbox


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[FifoInbox]:
    fifo = FifoInbox(tmp_path / "inbox.fifo")
    try:
        yield fifo
    finally:
        await fifo.aclose()
