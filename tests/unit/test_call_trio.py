"""`aio.call_trio` — how a gRPC handler (asyncio) runs the use case (trio): values and errors
come back as they were, a cancelled handler waits for its trio side's cleanup, and a stop
neither hangs nor crashes on calls still running."""

from __future__ import annotations

import asyncio

import pytest
import trio
import trio.lowlevel
import trio.testing
import trio_asyncio

from jobworkerp.aio import call_trio, open_asyncio_bridge, wait_for_bridged_calls

pytestmark = pytest.mark.timeout(30)


class Refused(Exception):
    pass


async def test_a_value_and_an_error_come_back_to_the_asyncio_caller_as_they_were() -> None:
    async def double(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return 2 * x

    async def refuse() -> None:
        await trio.lowlevel.checkpoint()
        raise Refused("no")

    async def handler() -> tuple[int, Exception | None]:
        value = await call_trio(double, 21)
        try:
            await call_trio(refuse)
        except Refused as e:
            return value, e
        return value, None

    async with open_asyncio_bridge():
        value, error = await trio_asyncio.aio_as_trio(handler)()
    assert value == 42 and isinstance(error, Refused) and str(error) == "no"


async def test_a_cancelled_caller_cancels_the_trio_side_and_returns_once_its_cleanup_is_over() -> None:
    """A DIRECT job's caller that leaves is cancelled while its trio side waits for the result;
    that side's cleanup (deleting the job, shielded) must be over before the handler ends, even
    if the handler is cancelled again meanwhile."""
    order: list[str] = []
    waiting = trio.Event()
    cleanup_may_end = trio.Event()

    async def use_case() -> None:
        try:
            waiting.set()
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                order.append("cleanup started")
                await cleanup_may_end.wait()
                order.append("cleanup over")

    async def handler() -> None:
        try:
            await call_trio(use_case)
        except asyncio.CancelledError:
            order.append("handler cancelled")
            raise

    async with open_asyncio_bridge():
        task = asyncio.get_event_loop().create_task(handler())
        await waiting.wait()
        task.cancel()
        await trio.testing.wait_all_tasks_blocked()  # the cancel reached the trio side: its cleanup waits
        assert order == ["cleanup started"]
        task.cancel()  # once more, while it waits for the cleanup
        await trio.testing.wait_all_tasks_blocked()
        assert order == ["cleanup started"] and not task.done()
        cleanup_may_end.set()
        await trio_asyncio.aio_as_trio(asyncio.wait)([task])
    assert order == ["cleanup started", "cleanup over", "handler cancelled"] and task.cancelled()


async def test_calls_running_at_the_stop_are_counted_and_the_stop_ends_them() -> None:
    """The server waits for running calls before it closes storage (wait_for_bridged_calls);
    whatever still runs when the bridge closes is cancelled, its handler sees a cancellation."""
    started = trio.Event()
    finished = trio.Event()

    async def quick() -> None:
        started.set()
        await finished.wait()

    async def stuck() -> None:
        await trio.sleep_forever()

    outcomes: list[str] = []

    async def handler(fn: object) -> None:
        try:
            await call_trio(fn)  # type: ignore[arg-type]
            outcomes.append("returned")
        except asyncio.CancelledError:
            outcomes.append("cancelled")
            raise

    async with open_asyncio_bridge():
        loop = asyncio.get_event_loop()
        loop.create_task(handler(quick))
        loop.create_task(handler(stuck))
        await started.wait()
        await trio.testing.wait_all_tasks_blocked()  # both trio sides have started and wait
        assert await wait_for_bridged_calls(0) == 2
        finished.set()
        await trio.testing.wait_all_tasks_blocked()
        assert await wait_for_bridged_calls(0) == 1  # the quick one ended; the stuck one runs on
    assert sorted(outcomes) == ["cancelled", "returned"]
