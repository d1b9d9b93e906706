"""Read a server's /metrics as a user's scraper would: over HTTP, parsed by prometheus_client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

HANG_S = 120.0  # hang guard only: no timing is asserted


class Samples:
    """One scrape: every sample by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self._values[sample.name, frozenset(sample.labels.items())] = sample.value

    def get(self, name: str, **labels: str) -> float | None:
        """The sample with exactly these labels; None when there is none."""
        return self._values.get((name, frozenset(labels.items())))

    def names(self) -> set[str]:
        return {name for name, _ in self._values}

    def labelled(self, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
        """Every sample of `name` whose labels include these."""
        wanted = set(labels.items())
        return {key: value for (n, key), value in self._values.items() if n == name and wanted <= key}


def metrics_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/metrics"


def scrape(port: int) -> Samples:
    response = httpx.get(metrics_url(port), timeout=30)
    response.raise_for_status()
    return Samples(response.text)


def wait_for_samples(port: int, what: str, ready: Callable[[Samples], bool]) -> Samples:
    """Scrape until `ready` holds (metrics are counted just after a result is published, so a
    client may see its result first); a generous hang guard, never a timing assertion."""
    deadline = time.monotonic() + HANG_S
    while True:
        samples = scrape(port)
        if ready(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"hang guard: {what} after {HANG_S}s; last scrape:\n{samples.text}")
        time.sleep(0.1)


async def wait_for_samples_async(port: int, what: str, ready: Callable[[Samples], bool]) -> Samples:
    """`wait_for_samples` from an asyncio client scenario, off its event loop."""
    return await asyncio.to_thread(wait_for_samples, port, what, ready)
