"""Chunks a call emits while it runs (actors.hosted.emit) reach the caller's on_emit, in order,
before the reply, on exclusive and shared hosts; a caller without on_emit makes emit a no-op."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from actors.process_pool import ProcessPool
from tests.actors import pool_funcs as f

pytestmark = [pytest.mark.trio, pytest.mark.timeout(60)]

Run = Callable[..., Awaitable[Any]]


def _runners(pool: ProcessPool) -> list[tuple[str, Run]]:
    return [("exclusive", pool.run), ("shared", pool.run_shared)]


async def test_chunks_arrive_in_order_before_the_reply() -> None:
    chunks = [f"chunk {i}\n".encode() for i in range(200)] + [b"x" * 200_000]
    async with ProcessPool(1) as pool:
        for kind, run in _runners(pool):
            got: list[bytes] = []
            assert await run(f.emit_chunks, chunks, on_emit=got.append) is True, kind
            assert got == chunks, kind


async def test_without_on_emit_nothing_is_sent_and_the_call_says_nobody_takes_them() -> None:
    async with ProcessPool(1) as pool:
        for kind, run in _runners(pool):
            assert await run(f.emit_chunks, [b"ignored"]) is False, kind
            # The host is intact and its next call works as before.
            assert await run(f.add, 1, 2) == 3, kind


async def test_a_chunk_arrives_while_the_call_still_runs(tmp_path: Path) -> None:
    async with ProcessPool(1) as pool:
        for kind, run in _runners(pool):
            gate = tmp_path / f"gate-{kind}"

            def open_gate(chunk: bytes, gate: Path = gate) -> None:
                assert chunk == b"first"
                gate.touch()  # the call cannot return before this

            assert await run(f.emit_then_wait_for, b"first", str(gate), on_emit=open_gate) == "done"


async def test_a_taker_that_raises_loses_its_chunks_but_not_its_call() -> None:
    async with ProcessPool(1) as pool:
        for kind, run in _runners(pool):
            calls: list[bytes] = []

            def broken(chunk: bytes, calls: list[bytes] = calls) -> None:
                calls.append(chunk)
                raise RuntimeError("taker bug")

            assert await run(f.emit_chunks, [b"a", b"b"], on_emit=broken) is True, kind
            assert calls == [b"a"], kind
            assert pool.stats["crashes"] == 0 and pool.stats["killed"] == 0


async def test_only_the_thread_running_the_call_emits() -> None:
    async with ProcessPool(1) as pool:
        got: list[bytes] = []
        assert await pool.run_shared(f.emit_from_a_thread_of_its_own, b"lost", on_emit=got.append) is False
        assert got == []


async def test_concurrent_shared_calls_each_get_their_own_chunks() -> None:
    async with ProcessPool(1) as pool:
        got: dict[str, list[bytes]] = {name: [] for name in "abcd"}

        async def call(name: str) -> None:
            chunks = [f"{name}{i}".encode() for i in range(100)]
            await pool.run_shared(f.emit_chunks, chunks, on_emit=got[name].append)

        async with trio.open_nursery() as nursery:
            for name in got:
                nursery.start_soon(call, name)
        for name, chunks in got.items():
            assert chunks == [f"{name}{i}".encode() for i in range(100)]
