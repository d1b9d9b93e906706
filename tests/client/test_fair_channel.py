"""StreamGate (client/fair_channel.py), the queue FairChannel's calls wait in for an HTTP/2
stream: arrival order, the limit read afresh, and waits that end early leaving no place taken.
(tests/e2e/test_stream_limit.py drives it through a real server.)"""

from __future__ import annotations

import asyncio

import pytest
from grpclib.metadata import Deadline

from jobworkerp.client.fair_channel import StreamGate


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_waiters_get_places_in_arrival_order_and_newcomers_queue_behind_them() -> None:
    async def scenario() -> list[str]:
        gate = StreamGate(lambda: 1)
        order: list[str] = []
        await gate.acquire(None)

        async def call(name: str) -> None:
            await gate.acquire(None)
            order.append(name)

        first = asyncio.ensure_future(call("first"))
        second = asyncio.ensure_future(call("second"))
        await asyncio.sleep(0)
        gate.release()  # the holder leaves and, as a caller that calls again would, asks at once
        third = asyncio.ensure_future(call("again"))
        await first
        gate.release()
        await second
        gate.release()
        await third
        return order

    assert run(scenario()) == ["first", "second", "again"]


def test_a_grown_limit_lets_waiters_in_when_looked_at_again() -> None:
    async def scenario() -> bool:
        limit = [1]
        gate = StreamGate(lambda: limit[0])
        await gate.acquire(None)
        waiting = asyncio.ensure_future(gate.acquire(None))
        await asyncio.sleep(0)
        assert not waiting.done()
        limit[0] = 2  # the server's SETTINGS raised it
        gate.admit()
        await waiting
        return gate.waiting

    assert run(scenario()) is False


def test_a_waiter_cancelled_just_before_a_place_frees_leaves_it_to_the_next() -> None:
    """The cancel ends the awaited future at once; the place freed before the cancelled caller
    runs again goes to the next waiter, and the cancelled one leaves quietly."""
    async def scenario() -> None:
        gate = StreamGate(lambda: 1)
        await gate.acquire(None)
        cancelled = asyncio.ensure_future(gate.acquire(None))
        admitted = asyncio.ensure_future(gate.acquire(None))
        await asyncio.sleep(0)
        cancelled.cancel()
        gate.release()
        results = await asyncio.gather(cancelled, admitted, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError) and results[1] is None
        gate.release()  # the admitted one leaves: the gate is empty again, a call gets in at once
        await gate.acquire(None)
        assert not gate.waiting

    run(scenario())


def test_a_deadline_that_passes_while_waiting_is_grpclibs_deadline_error_and_takes_no_place() -> None:
    async def scenario() -> None:
        gate = StreamGate(lambda: 1)
        await gate.acquire(None)
        with pytest.raises(TimeoutError, match="Deadline exceeded"):
            await gate.acquire(Deadline.from_timeout(0))
        assert not gate.waiting
        gate.release()
        await gate.acquire(None)  # the one place is free: the expired wait did not keep it

    run(scenario())
