from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jobworkerp import tracing
from tests.scalable.services import scalable_env


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into an in-memory exporter (the same `install` production uses)."""
    exporter = InMemorySpanExporter()
    tracing.install([SimpleSpanProcessor(exporter)])
    try:
        yield exporter
    finally:
        tracing.shutdown()


@pytest.fixture
def scalable() -> Iterator[dict[str, str]]:
    """A fresh MariaDB database and Redis key prefix (tests/scalable/services.py), as settings."""
    with scalable_env() as env:
        yield env
