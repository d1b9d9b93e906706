"""Behaviour of the one_for_one Supervisor: restarts, policies, intensity, escalation."""

from __future__ import annotations

import logging
from typing import Literal

import pytest
import trio
import trio.testing

from actors.actor import Actor
from actors.supervisor import ChildSpec, Supervisor, SupervisorEscalation

pytestmark = [pytest.mark.trio, pytest.mark.timeout(30)]


class Boom(Exception):
    pass


class Child:
    """A scripted child: each run follows the next entry of ``script``.

    "crash" raises after reporting started, "return" ends normally, "forever"
    runs until cancelled, a float sleeps that long and then crashes.
    """

    def __init__(self, name: str, script: list[str | float], restart: str = "permanent") -> None:
        self.name = name
        self.script = script
        self.runs = 0
        self.cancelled = 0
        self.restart = restart
        self.running = trio.Event()

    def spec(self) -> ChildSpec:
        restart: Literal["permanent", "transient", "temporary"] = self.restart  # type: ignore[assignment]
        return ChildSpec(self.name, self.start, restart)

    async def start(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        step = self.script[min(self.runs, len(self.script) - 1)]
        self.runs += 1
        task_status.started()
        try:
            if step == "crash":
                await trio.lowlevel.checkpoint()
                raise Boom(f"{self.name} run {self.runs}")
            if step == "return":
                return
            if step == "forever":
                self.running.set()
                await trio.sleep_forever()
            assert isinstance(step, float)
            await trio.sleep(step)
            raise Boom(f"{self.name} run {self.runs} after {step} s")
        except trio.Cancelled:
            self.cancelled += 1
            raise


async def test_crashing_child_is_restarted_and_its_sibling_keeps_running(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="actors.supervisor")
    flaky = Child("flaky", ["crash", "forever"])
    steady = Child("steady", ["forever"])
    supervisor = Supervisor([flaky.spec(), steady.spec()])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await flaky.running.wait()
        assert (flaky.runs, steady.runs) == (2, 1)
        assert steady.cancelled == 0
        assert supervisor.restarts == 1
        nursery.cancel_scope.cancel()
    assert steady.cancelled == 1 and flaky.cancelled == 1
    crash_logs = [r for r in caplog.records if r.name == "actors.supervisor" and r.exc_info]
    assert len(crash_logs) == 1 and "'flaky' crashed" in crash_logs[0].getMessage()
    assert isinstance(crash_logs[0].exc_info[1], Boom)  # type: ignore[index]


async def test_children_start_in_order_each_ready_before_the_next() -> None:
    order: list[str] = []

    def make(name: str) -> ChildSpec:
        async def start(*, task_status: trio.TaskStatus[None]) -> None:
            order.append(f"{name} starting")
            await trio.lowlevel.checkpoint()
            order.append(f"{name} ready")
            task_status.started()
            await trio.sleep_forever()

        return ChildSpec(name, start)

    supervisor = Supervisor([make("a"), make("b")])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        assert order == ["a starting", "a ready", "b starting", "b ready"]
        nursery.cancel_scope.cancel()


async def test_transient_child_is_restarted_after_a_crash_but_not_after_returning() -> None:
    child = Child("transient", ["crash", "return"], restart="transient")
    supervisor = Supervisor([child.spec()])
    await supervisor.run()  # returns: nothing left to supervise
    assert child.runs == 2
    assert supervisor.restarts == 1


async def test_temporary_child_is_never_restarted() -> None:
    crasher = Child("temp-crash", ["crash"], restart="temporary")
    finisher = Child("temp-return", ["return"], restart="temporary")
    supervisor = Supervisor([crasher.spec(), finisher.spec()])
    await supervisor.run()
    assert (crasher.runs, finisher.runs) == (1, 1)
    assert supervisor.restarts == 0


async def test_permanent_child_is_restarted_even_after_returning() -> None:
    child = Child("permanent", ["return", "return", "forever"])
    supervisor = Supervisor([child.spec()])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await child.running.wait()
        assert child.runs == 3 and supervisor.restarts == 2
        nursery.cancel_scope.cancel()


async def test_restart_intensity_exceeded_escalates_and_cancels_siblings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flaky = Child("flaky", [1.0])  # crashes 1 s after every start
    steady = Child("steady", ["forever"])
    supervisor = Supervisor([flaky.spec(), steady.spec()], max_restarts=3, max_seconds=5.0)
    with pytest.raises(SupervisorEscalation) as info:
        await supervisor.run()
    # Crashes at t=1,2,3 are restarted; the 4th (4 in 5 s) escalates.
    assert trio.current_time() == pytest.approx(4.0)
    assert flaky.runs == 4 and supervisor.restarts == 3
    assert steady.cancelled == 1
    assert info.value.child == "flaky"
    assert isinstance(info.value.__cause__, Boom)
    assert "flaky" in str(info.value)


async def test_crashes_spread_out_in_time_do_not_escalate(autojump_clock: trio.testing.MockClock) -> None:
    flaky = Child("slow-flaky", [3.0])  # one crash every 3 s: at most 2 per 5 s window
    supervisor = Supervisor([flaky.spec()], max_restarts=2, max_seconds=5.0)
    with trio.move_on_after(31):
        await supervisor.run()
    assert flaky.runs == 11 and supervisor.restarts == 10


async def test_child_failing_to_start_escalates() -> None:
    async def broken(*, task_status: trio.TaskStatus[None]) -> None:
        raise Boom("bad config")

    steady = Child("steady", ["forever"])
    supervisor = Supervisor([steady.spec(), ChildSpec("broken", broken)])
    with pytest.raises(SupervisorEscalation, match="broken") as info:
        await supervisor.run()
    assert isinstance(info.value.__cause__, Boom)
    assert steady.cancelled == 1


async def test_start_child_adds_a_supervised_child_at_run_time() -> None:
    steady = Child("steady", ["forever"])
    late = Child("late", ["crash", "forever"])
    supervisor = Supervisor([steady.spec()])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await supervisor.start_child(late.spec())
        await late.running.wait()
        assert late.runs == 2 and supervisor.restarts == 1
        nursery.cancel_scope.cancel()
    assert late.cancelled == 1


async def test_supervisor_created_empty_serves_dynamic_children_until_cancelled() -> None:
    supervisor = Supervisor([], name="dynamic")
    temp = Child("temp", ["return"], restart="temporary")
    worker = Child("worker", ["forever"])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await supervisor.start_child(temp.spec())  # ends at once, not restarted...
        await trio.testing.wait_all_tasks_blocked()
        await supervisor.start_child(worker.spec())  # ...and the supervisor is still there
        await worker.running.wait()
        nursery.cancel_scope.cancel()
    assert (temp.runs, worker.runs, worker.cancelled) == (1, 1, 1)


async def test_cancelling_the_supervisor_stops_children_without_restarts() -> None:
    a, b = Child("a", ["forever"]), Child("b", ["forever"])
    supervisor = Supervisor([a.spec(), b.spec()])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert (a.cancelled, b.cancelled) == (1, 1)
    assert (a.runs, b.runs) == (1, 1)
    assert supervisor.restarts == 0


class Doubler(Actor[int, int]):
    async def handle(self, msg: int) -> int:
        if msg < 0:
            raise ValueError("negative")
        return 2 * msg


async def test_supervised_actor_is_restarted_after_a_crashing_tell() -> None:
    actor = Doubler(name="doubler")
    supervisor = Supervisor([ChildSpec("doubler", actor.run)])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await actor.tell(-1)  # crashes run(); the supervisor restarts it
        assert await actor.ask(21) == 42
        assert supervisor.restarts == 1
        nursery.cancel_scope.cancel()
