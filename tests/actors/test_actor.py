"""Behaviour of the Actor base class: ordering, errors, cancellation, backpressure."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors.actor import Actor, ActorStopped

pytestmark = [pytest.mark.trio, pytest.mark.timeout(30)]


class Recorder(Actor[str, str]):
    """Records every message it handles; 'fail' raises; 'wait' blocks on a gate."""

    def __init__(self, capacity: int = 64) -> None:
        super().__init__(capacity=capacity, name="recorder")
        self.handled: list[str] = []
        self.gate = trio.Event()
        self.entered_wait = trio.Event()

    async def handle(self, msg: str) -> str:
        if msg == "wait":
            self.entered_wait.set()
            await self.gate.wait()
        if msg == "fail":
            raise LookupError("cannot handle 'fail'")
        self.handled.append(msg)
        return msg.upper()


async def test_asks_are_answered_in_order_after_earlier_tells() -> None:
    actor = Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await actor.tell("a")
        actor.tell_nowait("b")
        assert await actor.ask("c") == "C"
        assert [await actor.ask(m) for m in ("d", "e")] == ["D", "E"]
        assert actor.handled == ["a", "b", "c", "d", "e"]
        actor.close()


async def test_handle_error_goes_back_to_the_asker_and_the_actor_keeps_serving() -> None:
    actor = Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        with pytest.raises(LookupError, match="cannot handle 'fail'"):
            await actor.ask("fail")
        assert await actor.ask("next") == "NEXT"
        actor.close()


async def test_cancelled_asker_does_not_crash_the_actor() -> None:
    actor = Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        with trio.move_on_after(10) as scope:
            async with trio.open_nursery() as inner:
                inner.start_soon(actor.ask, "wait")
                await actor.entered_wait.wait()
                inner.cancel_scope.cancel()  # the asker leaves while handle() runs
        assert not scope.cancelled_caught
        actor.gate.set()  # handle() finishes and replies to nobody
        assert await actor.ask("after") == "AFTER"
        actor.close()
    assert actor.handled == ["wait", "after"]


async def test_ask_cancelled_before_pickup_is_skipped() -> None:
    actor = Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        nursery.start_soon(actor.ask, "wait")
        await actor.entered_wait.wait()
        async with trio.open_nursery() as inner:
            inner.start_soon(actor.ask, "orphan")  # queued behind "wait"...
            await trio.testing.wait_all_tasks_blocked()
            inner.cancel_scope.cancel()  # ...then abandoned
        actor.gate.set()
        assert await actor.ask("after") == "AFTER"
        actor.close()
    assert actor.handled == ["wait", "after"]


async def test_tell_nowait_raises_wouldblock_when_the_mailbox_is_full() -> None:
    actor = Recorder(capacity=2)
    actor.tell_nowait("a")
    actor.tell_nowait("b")
    with pytest.raises(trio.WouldBlock):
        actor.tell_nowait("c")
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await actor.tell("c")  # room again once the actor drains
        actor.close()
    assert actor.handled == ["a", "b", "c"]


async def test_tell_blocks_while_the_mailbox_is_full() -> None:
    actor = Recorder(capacity=1)
    actor.tell_nowait("a")
    sent = trio.Event()

    async def send_b() -> None:
        await actor.tell("b")
        sent.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_b)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set()
        await nursery.start(actor.run)
        await sent.wait()
        actor.close()
    assert actor.handled == ["a", "b"]


async def test_a_failing_tell_ends_run_with_that_exception() -> None:
    actor = Recorder()
    await actor.tell("ok")
    await actor.tell("fail")
    with pytest.raises(LookupError, match="cannot handle 'fail'"):
        await actor.run()
    assert actor.handled == ["ok"]


async def test_mailbox_survives_a_crash_so_a_restart_serves_the_rest() -> None:
    actor = Recorder()
    await actor.tell("fail")
    await actor.tell("queued")
    with pytest.raises(LookupError):
        await actor.run()
    actor.close()
    await actor.run()  # a supervisor's restart
    assert actor.handled == ["queued"]


async def test_close_drains_the_mailbox_and_refuses_new_messages() -> None:
    actor = Recorder()
    for msg in ("a", "b", "c"):
        await actor.tell(msg)
    actor.close()
    await actor.run()
    assert actor.handled == ["a", "b", "c"]
    with pytest.raises(trio.ClosedResourceError):
        await actor.tell("late")


async def test_asker_is_told_when_the_actor_is_cancelled_mid_handle() -> None:
    actor = Recorder()
    actor_scope = trio.CancelScope()

    async def run_actor(*, task_status: trio.TaskStatus[None]) -> None:
        with actor_scope:
            await actor.run(task_status=task_status)

    async def cancel_actor_once_busy() -> None:
        await actor.entered_wait.wait()
        actor_scope.cancel()

    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor)
        nursery.start_soon(cancel_actor_once_busy)
        with pytest.raises(ActorStopped):
            await actor.ask("wait")
