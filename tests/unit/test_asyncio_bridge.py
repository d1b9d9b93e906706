"""The trio <-> asyncio bridge at shutdown: what is still running on the asyncio side must not
take the server down as the loop closes."""

from __future__ import annotations

import asyncio

import pytest
import trio
import trio.lowlevel
import trio_asyncio

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


async def test_ready_callbacks_run_in_order_and_trio_tasks_still_get_turns() -> None:
    """The bridge runs the asyncio callbacks that are ready in batches (aio.HANDLE_BATCH) rather
    than one per trio scheduling round: they still run in the order they were scheduled, asyncio
    code that keeps scheduling itself does not starve the trio tasks, and the loop stops."""
    from jobworkerp.aio import HANDLE_BATCH, call_trio

    ran: list[int] = []
    spins = 0
    spinning = True

    def spin() -> None:  # an asyncio callback that always schedules itself again
        nonlocal spins
        spins += 1
        if spinning:
            asyncio.get_event_loop().call_soon(spin)

    async with open_asyncio_bridge():
        loop = asyncio.get_event_loop()
        for i in range(3 * HANDLE_BATCH):
            loop.call_soon(ran.append, i)
        loop.call_soon(spin)
        try:
            for _ in range(10):  # each needs the trio side to get a turn while spin() keeps going
                await trio.lowlevel.checkpoint()
            assert ran == list(range(3 * HANDLE_BATCH))  # not one callback per trio round
        finally:
            spinning = False  # or the loop's exit drain would run spin() forever

        async def trio_side(x: int) -> int:
            await trio.lowlevel.checkpoint()
            return x + 1

        async def asyncio_side() -> int:
            return await call_trio(trio_side, 41)

        assert await trio_asyncio.aio_as_trio(asyncio_side)() == 42
    assert spins > 0


async def test_callbacks_are_checked_in_debug_mode_only_as_asyncio_does() -> None:
    """A coroutine function handed to call_soon is refused in debug mode (the check asyncio itself
    makes only then); plain callbacks run in either mode."""

    async def not_a_callback() -> None:
        pass

    ran: list[str] = []
    async with open_asyncio_bridge():
        loop = asyncio.get_event_loop()
        loop.set_debug(True)
        with pytest.raises(TypeError, match="coroutines cannot be used with call_soon"):
            loop.call_soon(not_a_callback)
        loop.call_soon(ran.append, "debug")
        loop.set_debug(False)
        loop.call_soon(ran.append, "plain")
        for _ in range(5):
            await trio.lowlevel.checkpoint()
    assert ran == ["debug", "plain"]
