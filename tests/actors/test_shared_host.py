"""ProcessPool.run_shared: many calls on one host at once, cancels as requests, crash containment."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio
import trio.testing

from actors.process_pool import HostCrashed, ProcessPool
from tests.actors import pool_funcs as f
from tests.actors.fifo_inbox import FifoInbox
from tests.actors.test_process_pool import process_exists, wait_exit

pytestmark = [pytest.mark.trio, pytest.mark.timeout(60)]


async def test_calls_run_at_once_on_one_host_each_on_a_thread(inbox: FifoInbox, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with ProcessPool(1) as pool:
        results: list[str] = []

        async def call(name: str) -> None:
            results.append(await pool.run_shared(f.rendezvous, inbox.path, str(gate), name))

        async with trio.open_nursery() as nursery:
            for name in "abcde":
                nursery.start_soon(call, name)
            # All five arrive while none has returned, although the pool has one exclusive slot.
            assert {await inbox.next_line() for _ in range(5)} == set("abcde")
            assert pool.stats["busy"] == 5
            gate.touch()
        assert sorted(results) == list("abcde")
        # One shared host served them all, and no exclusive host was started.
        assert pool.stats["alive"] == 1 and pool.stats["pids"] == [pool.stats["shared_pid"]]
        assert (await pool.run_shared(f.thread_name)).startswith("call")


async def test_a_remote_error_fails_only_its_call() -> None:
    async with ProcessPool(1) as pool:
        with pytest.raises(ValueError, match="boom"):
            await pool.run_shared(f.fail_with_value_error, "boom")
        assert await pool.run_shared(f.add, 2, 3) == 5
        assert pool.stats["restarts"] == 0


async def test_a_cancelled_call_runs_its_hook_and_the_host_keeps_its_other_calls(
    inbox: FifoInbox, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    async with ProcessPool(1) as pool:
        other: list[str] = []

        async def bystander() -> None:
            other.append(await pool.run_shared(f.rendezvous, inbox.path, str(gate), "bystander"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(bystander)
            assert await inbox.next_line() == "bystander"
            with trio.CancelScope() as scope:
                nursery.start_soon(lambda: _cancel_on(inbox, scope, "waiter"))
                await pool.run_shared(f.wait_for_cancel, inbox.path, "waiter")
            assert scope.cancelled_caught
            # The hook ran in the host: the call saw its cancel, on the same live host.
            assert await inbox.next_line() == "waiter cancelled"
            gate.touch()
        assert other == ["bystander"]
        assert pool.stats["restarts"] == 0 and pool.stats["killed"] == 0 and pool.stats["crashes"] == 0


async def _cancel_on(inbox: FifoInbox, scope: trio.CancelScope, name: str) -> None:
    line = await inbox.next_line()
    assert line.startswith(f"{name} ")
    scope.cancel()


async def test_a_call_that_ignores_its_cancel_retires_the_host_once_the_others_are_done(
    inbox: FifoInbox, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    async with ProcessPool(1) as pool:
        pool.cancel_grace = 0  # give up on the ignored cancel at once
        old_pid = await pool.run_shared(f.getpid)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.run_shared, f.rendezvous, inbox.path, str(gate), "bystander")
            assert await inbox.next_line() == "bystander"
            with trio.CancelScope() as scope:
                nursery.start_soon(_cancel_when_reported, inbox, scope)
                await pool.run_shared(f.report_pid_and_hang, inbox.path)  # ignores cancels
            await trio.testing.wait_all_tasks_blocked()
            # Retired: new calls go to a fresh host, while the old one still runs the bystander.
            new_pid = await pool.run_shared(f.getpid)
            assert new_pid != old_pid and process_exists(old_pid)
            gate.touch()
        await wait_exit(old_pid)  # killed once its last waited-for call was over
        assert await pool.run_shared(f.getpid) == new_pid
        with trio.fail_after(20):  # the pool counts the host once it has reaped it
            while not pool.host_ends:  # noqa: ASYNC110 - the count is the only signal
                await trio.sleep(0.01)
        assert pool.host_ends == {"retired": 1}


async def _cancel_when_reported(inbox: FifoInbox, scope: trio.CancelScope) -> None:
    await inbox.next_line()
    scope.cancel()


async def test_a_host_that_dies_fails_every_call_it_had_with_the_report_and_is_replaced(
    inbox: FifoInbox,
) -> None:
    async with ProcessPool(1) as pool:
        old_pid = await pool.run_shared(f.getpid)
        outcomes: list[BaseException] = []

        async def doomed(name: str) -> None:
            try:
                await pool.run_shared(f.wait_for_cancel, inbox.path, name)
            except HostCrashed as e:
                outcomes.append(e)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(doomed, "a")
            nursery.start_soon(doomed, "b")
            await inbox.next_line()
            await inbox.next_line()
            os.kill(old_pid, signal.SIGSEGV)
        assert len(outcomes) == 2
        assert all(e.signal_name == "SIGSEGV" and f"pid {old_pid}" in str(e) for e in outcomes)
        assert pool.stats["crashes"] == 2
        assert await pool.run_shared(f.getpid) != old_pid
        # The exclusive hosts are another matter: they were never involved.
        assert await pool.run(f.add, 1, 1) == 2


async def test_a_segfaulting_call_fails_and_the_next_call_gets_a_fresh_host() -> None:
    async with ProcessPool(1) as pool:
        old_pid = await pool.run_shared(f.getpid)
        with pytest.raises(HostCrashed, match="SIGSEGV"):
            await pool.run_shared(f.segfault)
        assert await pool.run_shared(f.getpid) != old_pid
        assert pool.stats["restarts"] == 1


async def test_output_from_calls_does_not_corrupt_the_protocol() -> None:
    async with ProcessPool(1) as pool:
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(pool.run_shared, f.chatty, 256)
        assert await pool.run_shared(f.echo, {"x": [1, 2]}) == {"x": [1, 2]}


async def test_large_arguments_and_results_cross_intact_while_other_calls_run() -> None:
    big = os.urandom(3 * 1024 * 1024)
    async with ProcessPool(1) as pool:
        results: list[bytes] = []

        async def call() -> None:
            results.append(await pool.run_shared(f.echo, big))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(call)
        assert results == [big] * 3


async def test_closing_the_pool_fails_calls_in_flight_and_leaves_no_host(inbox: FifoInbox) -> None:
    pool = ProcessPool(1)
    errors: list[BaseException] = []
    async with pool:

        async def call() -> None:
            try:
                await pool.run_shared(f.wait_for_cancel, inbox.path, "x")
            except trio.ClosedResourceError as e:
                errors.append(e)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            pid = int((await inbox.next_line()).split()[1])
            await pool.aclose()
    assert len(errors) == 1 and not process_exists(pid)


async def test_a_host_over_its_memory_limit_fails_its_calls_naming_the_limit(inbox: FifoInbox) -> None:
    async with ProcessPool(1, max_rss_mb=256, max_rss_name="TEST_MAX_RSS") as pool:
        with pytest.raises(HostCrashed, match=r"over the limit of 256 MiB \(TEST_MAX_RSS\)"):
            await pool.run_shared(f.allocate_without_bound, inbox.path)
        assert await pool.run_shared(f.add, 1, 2) == 3


async def test_a_process_over_the_memory_limit_fails_only_the_call_that_started_it(inbox: FifoInbox) -> None:
    async with ProcessPool(1, max_rss_mb=256, max_rss_name="TEST_MAX_RSS") as pool:
        host_pid = await pool.run_shared(f.getpid)
        bystander_scope = trio.CancelScope()
        bystander: list[str] = []

        async def bystand() -> None:
            with bystander_scope:
                await pool.run_shared(f.wait_for_cancel, inbox.path, "bystander")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(bystand)
            assert (await inbox.next_line()).startswith("bystander ")
            with pytest.raises(HostCrashed, match=r"over the limit of 256 MiB \(TEST_MAX_RSS\)") as info:
                await pool.run_shared(f.allocate_in_a_reported_child, inbox.path)
            child = int(await inbox.next_line())
            assert f"process {child} of this call" in str(info.value)
            # The host and its other call live on.
            assert process_exists(host_pid)
            bystander_scope.cancel()
            bystander.append(await inbox.next_line())
        assert bystander == ["bystander cancelled"]
        assert await pool.run_shared(f.getpid) == host_pid
        assert pool.stats["restarts"] == 0
