"""The trio <-> asyncio bridge at shutdown: what is still running on the asyncio side must not
take the server down as the loop closes."""

from __future__ import annotations

import asyncio

import pytest
import trio

from jobworkerp.aio import open_asyncio_bridge

pytestmark = pytest.mark.timeout(30)


async def test_a_request_cut_off_by_the_stop_does_not_crash_the_server() -> None:
    """Found by the soak (seed 932128): a gRPC handler still running as the server stopped was
    cancelled, its Redis read turned the cancellation into a redis TimeoutError, and closing
    the loop re-raised that out of the server: a clean SIGTERM exited with status 1."""
    started = trio.Event()
    ended: list[str] = []

    async def handler() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise TimeoutError("Timeout reading from redis") from None

    async with open_asyncio_bridge():
        task = asyncio.get_event_loop().create_task(handler())
        await started.wait()
    assert ended == ["cancelled"] and task.done()
