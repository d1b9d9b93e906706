"""Decorated functions the client tests call through a real server (PLUGINS_RUNNER_DIR points here).

No RUNNERS list: discovery finds the module's @jobworkerp.function functions by themselves.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
from dataclasses import dataclass, field

import jobworkerp


@dataclass
class Point:
    x: float
    y: float


@dataclass
class Box:
    corner: Point
    width: int
    height: int
    tags: list[str] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    note: str | None = None


@jobworkerp.function
def grow(box: Box, by: int = 1, label: str | None = None) -> Box:
    """A dataclass in, a dataclass out: every kind of field crosses the wire."""
    tags = [*box.tags, label] if label is not None else box.tags
    return Box(Point(box.corner.x - by, box.corner.y - by), box.width + 2 * by, box.height + 2 * by, tags,
               {**box.labels, "grown": by}, box.note)


@jobworkerp.function
async def add(a: int, b: int) -> int:
    """An async function: run on an event loop of its own in the host."""
    await asyncio.sleep(0)
    return a + b


@jobworkerp.function
def checksum(data: bytes, rounds: int = 1) -> bytes:
    for _ in range(rounds):
        data = bytes(b ^ 0xFF for b in data)
    return data


@jobworkerp.function
def refuse(reason: str) -> str:
    raise ValueError(reason)


@jobworkerp.function
def crash() -> None:
    """Segfaults its runner host: only this job may fail."""
    ctypes.string_at(0)


@jobworkerp.function(name="host-pid", concurrent=True)
def host_pid() -> int:
    return os.getpid()
