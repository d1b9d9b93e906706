"""Behaviour of ProcessPool: results, remote errors, crashes, cancellation, concurrency, cleanup."""

from __future__ import annotations

import gc
import os
import pickle
import signal
import sys
import threading
import traceback
import warnings
from pathlib import Path

import pytest
import trio
import trio.testing

from actors.process_pool import HostCrashed, ProcessPool, open_process_pool
from tests.actors import pool_funcs as f
from tests.actors.fifo_inbox import FifoInbox
from tests.procs import process_gone

pytestmark = [pytest.mark.trio, pytest.mark.timeout(30)]

REPO_ROOT = Path(__file__).resolve().parents[2]


def process_exists(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    return not process_gone(pid)


async def test_run_returns_the_value() -> None:
    async with ProcessPool(2) as pool:
        assert await pool.run(f.add, 2, b=3) == 5
        assert await pool.run(f.noop) is None
        assert pool.stats["calls"] == 2


async def test_remote_exception_is_reraised_with_the_remote_frame() -> None:
    async with ProcessPool(1) as pool:
        with pytest.raises(ValueError, match="went wrong") as info:
            await pool.run(f.fail_with_value_error, "went wrong")
        frames = [(summary.name, Path(summary.filename).name) for summary in traceback.extract_tb(info.tb)]
        assert ("fail_with_value_error", "pool_funcs.py") in frames
        # The host survives an exception: same process serves the next call.
        pid = await pool.run(f.getpid)
        with pytest.raises(f.TwoArgError, match="7: custom init") as custom:
            await pool.run(f.fail_with_two_arg_error)
        assert custom.value.code == 7
        assert await pool.run(f.getpid) == pid


async def test_errors_that_must_not_escape_as_is() -> None:
    async with ProcessPool(1) as pool:
        # sys.exit() in a job must not stop the caller's program.
        with pytest.raises(RuntimeError, match="SystemExit"):
            await pool.run(f.call_sys_exit)
        with pytest.raises(pickle.PicklingError, match="return_unpicklable"):
            await pool.run(f.return_unpicklable)
        # An unpicklable argument fails in the caller, before any host is used.
        with pytest.raises(TypeError):
            await pool.run(f.add, threading.Lock(), 1)
        assert await pool.run(f.add, 1, 1) == 2
        assert pool.stats["crashes"] == 0


async def test_output_from_a_call_does_not_corrupt_the_protocol() -> None:
    async with ProcessPool(1) as pool:
        # 256 KiB of print() is far more than a pipe buffer: stderr must be drained.
        for _ in range(3):
            assert await pool.run(f.chatty, 256) == "still framed"
        assert await pool.run(f.add, 20, 22) == 42


async def test_segfault_fails_the_call_and_the_next_call_succeeds() -> None:
    async with ProcessPool(1) as pool:
        with pytest.raises(HostCrashed) as info:
            await pool.run(f.segfault)
        error = info.value
        assert error.signal_name == "SIGSEGV" and error.returncode == -signal.SIGSEGV
        first_line = str(error).splitlines()[0]
        assert "signal SIGSEGV (-11)" in first_line and "while running the call" in first_line
        assert "Segmentation fault" in error.stderr_tail  # faulthandler's report
        assert "segfault" in error.stderr_tail  # ...with the Python stack
        assert await pool.run(f.add, 1, 2) == 3
        assert pool.stats["crashes"] == 1 and pool.stats["restarts"] == 1
        assert pool.host_ends == {"signal": 1}


async def test_hosts_alive_counts_exclusive_and_shared_hosts_apart() -> None:
    async with ProcessPool(2) as pool:
        assert pool.hosts_alive == (0, 0)  # hosts start with the first call that needs one
        assert await pool.run(f.add, 1, 2) == 3
        assert pool.hosts_alive == (1, 0)
        assert await pool.run_shared(f.add, 1, 2) == 3
        assert pool.hosts_alive == (1, 1)


async def test_os_exit_fails_the_call_with_its_exit_code() -> None:
    async with ProcessPool(1) as pool:
        with pytest.raises(HostCrashed, match="exited with code 3") as info:
            await pool.run(f.exit_with, 3)
        assert info.value.returncode == 3 and info.value.signal_name is None
        assert await pool.run(f.add, 1, 2) == 3
        assert pool.host_ends == {"exit": 1}


async def test_host_killed_from_outside_fails_the_call_with_sigkill(inbox: FifoInbox) -> None:
    async with ProcessPool(1) as pool:

        async def kill_host_when_running() -> None:
            pid = int(await inbox.next_line())
            assert pool.stats["pids"] == [pid]
            os.kill(pid, signal.SIGKILL)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_host_when_running)
            with pytest.raises(HostCrashed, match="SIGKILL") as info:
                await pool.run(f.report_pid_and_hang, inbox.path)
        assert info.value.returncode == -signal.SIGKILL
        assert await pool.run(f.add, 1, 2) == 3


async def test_cancelled_call_returns_without_waiting_for_the_call_and_the_host_is_replaced(
    inbox: FifoInbox,
) -> None:
    async with ProcessPool(1) as pool:
        old_pid = await pool.run(f.getpid)
        # The call would hang for 60 s: returning under the 20 s guard means it was not awaited.
        with trio.fail_after(20), trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pool.run, f.report_pid_and_hang, inbox.path)
                assert int(await inbox.next_line()) == old_pid  # the host is running the call
                scope.cancel()
        assert scope.cancelled_caught
        new_pid = await pool.run(f.getpid)
        assert new_pid != old_pid and not process_exists(old_pid)
        assert pool.stats["killed"] == 1 and pool.stats["crashes"] == 0
        assert pool.host_ends == {"cancel": 1}


async def test_cancelling_a_call_kills_processes_it_spawned(inbox: FifoInbox) -> None:
    call_scope = trio.CancelScope()

    async with ProcessPool(1) as pool:

        async def call() -> None:
            with call_scope:
                await pool.run(f.spawn_grandchild_and_hang, inbox.path)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            grandchild = int(await inbox.next_line())
            pidfd = os.pidfd_open(grandchild)  # wait for its exit without polling
            try:
                call_scope.cancel()
                with trio.fail_after(30):
                    await trio.lowlevel.wait_readable(pidfd)
            finally:
                os.close(pidfd)
        assert not process_exists(grandchild)


async def test_two_hosts_run_two_calls_at_once_and_a_third_waits(inbox: FifoInbox, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    results: list[str] = []

    async with ProcessPool(2) as pool:

        async def call(name: str) -> None:
            results.append(await pool.run(f.rendezvous, inbox.path, str(gate), name))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "a")
            nursery.start_soon(call, "b")
            # Both report arrival while neither has returned: they run at once.
            assert {await inbox.next_line(), await inbox.next_line()} == {"a", "b"}
            nursery.start_soon(call, "c")
            await trio.testing.wait_all_tasks_blocked()
            assert pool.stats["busy"] == 2 and pool.stats["waiting"] == 1
            gate.touch()
            assert await inbox.next_line() == "c"  # only now did "c" get a host
        assert sorted(results) == ["a", "b", "c"]
        assert pool.stats["alive"] == 2


async def test_waiter_cancelled_before_getting_a_host_kills_nothing(inbox: FifoInbox, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with ProcessPool(1) as pool:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.run, f.rendezvous, inbox.path, str(gate), "holder")
            assert await inbox.next_line() == "holder"
            with trio.CancelScope() as waiter_scope:
                waiter_scope.cancel()
                await pool.run(f.noop)  # never gets past waiting for the slot
            gate.touch()
        assert pool.stats["killed"] == 0 and pool.stats["waiting"] == 0
        assert await pool.run(f.add, 1, 1) == 2


async def test_host_local_state_persists_between_calls() -> None:
    async with open_process_pool(1, name="stateful") as pool:
        pid = await pool.run(f.remember, "model", {"weights": [1, 2, 3]})
        assert await pool.run(f.recall, "model") == ({"weights": [1, 2, 3]}, pid)


async def test_preload_failure_is_reported_as_a_start_up_crash() -> None:
    async with ProcessPool(1, preload=["tests.actors.no_such_module"]) as pool:
        with pytest.raises(HostCrashed, match="during start-up") as info:
            await pool.run(f.noop)
        assert "ModuleNotFoundError" in info.value.stderr_tail
        assert pool.host_ends == {"startup": 1}


async def test_aclose_leaves_no_child_process_and_no_resource_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with ProcessPool(2) as pool:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pool.run, f.hang, 0.2)
                nursery.start_soon(pool.run, f.hang, 0.2)
            pids = pool.stats["pids"]
            assert len(pids) == 2
            interrupted: list[str] = []

            async def long_call() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await pool.run(f.hang, 30)
                interrupted.append("closed")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(long_call)
                await trio.testing.wait_all_tasks_blocked()
                await pool.aclose()  # closes under a running call
            assert interrupted == ["closed"]
        gc.collect()
    assert not [pid for pid in pids if process_exists(pid)]
    assert pool.stats["alive"] == 0
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    with pytest.raises(trio.ClosedResourceError):
        await pool.run(f.noop)


async def test_large_arguments_and_results_cross_intact() -> None:
    payload = os.urandom(3_000_000)
    async with ProcessPool(1) as pool:
        assert await pool.run(f.echo, payload) == payload
        assert await pool.run(f.echo, [payload[:10]] * 3) == [payload[:10]] * 3


async def test_host_that_never_becomes_ready_times_out() -> None:
    # The preload sleeps 30 s: failing under the 20 s guard means the start-up timeout fired.
    async with ProcessPool(1, preload=["tests.actors.slow_preload"], startup_timeout=0.5) as pool:
        with trio.fail_after(20), pytest.raises(HostCrashed, match=r"did not become ready within 0.5 s"):
            await pool.run(f.noop)
        assert pool.stats["alive"] == 0


async def test_kill_grace_lets_the_host_handle_sigterm_without_delaying_the_caller(inbox: FifoInbox) -> None:
    async with ProcessPool(1, kill_grace=5.0) as pool:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.run, f.hang_until_sigterm, inbox.path)
            assert await inbox.next_line() == "ready"
            nursery.cancel_scope.cancel()
        assert await inbox.next_line() == "terminated politely"
        assert await pool.run(f.add, 1, 1) == 2


async def test_host_crashed_pickles_with_its_details() -> None:
    error = HostCrashed("runner host exited with code 3 while running the call", 3, None, "last words")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.returncode, copy.signal_name, copy.stderr_tail) == (3, None, "last words")
    assert str(copy) == str(error) and str(error).splitlines()[-1] == "last words"


async def test_crashes_among_concurrent_callers_only_fail_their_own_calls() -> None:
    outcomes = {"ok": 0, "crashed": 0}
    async with ProcessPool(2) as pool:

        async def caller(i: int) -> None:
            for j in range(5):
                if (i + j) % 4 == 0:
                    with pytest.raises(HostCrashed, match="code 1"):
                        await pool.run(f.exit_with, 1)
                    outcomes["crashed"] += 1
                else:
                    assert await pool.run(f.add, i, j) == i + j
                    outcomes["ok"] += 1

        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(caller, i)
        assert outcomes == {"ok": 22, "crashed": 8}
        assert pool.stats["crashes"] == 8 and pool.stats["alive"] <= 2
        assert await pool.run(f.add, 1, 1) == 2


async def test_a_host_over_its_memory_limit_is_killed_and_its_call_fails_naming_the_limit(
    inbox: FifoInbox,
) -> None:
    async with ProcessPool(1, max_rss_mb=256, max_rss_name="TEST_MAX_RSS") as pool:
        old_pid = await pool.run(f.getpid)
        with pytest.raises(HostCrashed, match=r"over the limit of 256 MiB \(TEST_MAX_RSS\)") as info:
            await pool.run(f.allocate_without_bound, inbox.path)
        assert info.value.returncode == -signal.SIGKILL
        assert await inbox.next_line() == "allocating"
        # The next call gets a fresh host, and an ordinary call is left alone.
        assert await pool.run(f.getpid) != old_pid
        assert await pool.run(f.add, 1, 2) == 3
        assert pool.host_ends == {"memory_limit": 1}


async def wait_exit(pid: int) -> None:
    """Return once `pid` has exited (a zombie counts), without polling."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)


async def test_a_host_whose_parent_is_killed_dies_with_what_it_spawned(inbox: FifoInbox) -> None:
    parent = await trio.lowlevel.open_process([sys.executable, "-m", "tests.actors.orphaning_parent", inbox.path],
                                              cwd=REPO_ROOT)
    try:
        host, grandchild = (int(pid) for pid in (await inbox.next_line()).split())
        parent.kill()  # SIGKILL: the pool gets no chance to stop its host
        await parent.wait()
        await wait_exit(host)
        await wait_exit(grandchild)
    finally:
        parent.kill()
        await parent.wait()
    assert not process_exists(host) and not process_exists(grandchild)


async def test_a_garbage_reply_fails_only_its_call_and_the_host_is_replaced() -> None:
    async with ProcessPool(1) as pool:
        old_pid = await pool.run(f.getpid)
        with pytest.raises(RuntimeError, match="could not unpickle the reply"):
            await pool.run(f.write_garbage_frame)
        # The real reply that followed the garbage must not be taken for the next call's.
        assert await pool.run(f.add, 2, 3) == 5
        assert await pool.run(f.getpid) != old_pid
        assert pool.host_ends == {"retired": 1}


async def test_a_host_that_closes_its_pipes_fails_only_its_call() -> None:
    async with ProcessPool(1) as pool:
        old_pid = await pool.run(f.getpid)
        with pytest.raises(HostCrashed):
            await pool.run(f.close_protocol_pipes)
        assert await pool.run(f.add, 2, 3) == 5
        assert await pool.run(f.getpid) != old_pid


@pytest.mark.parametrize("from_thread", [False, True], ids=["main-thread", "worker-thread"])
async def test_memory_of_processes_a_call_started_counts_towards_the_limit(inbox: FifoInbox,
                                                                         from_thread: bool) -> None:
    """Also a process started from a thread of the host: Linux lists it as a child of that
    thread only, and an earlier version that looked at the main thread's children missed it."""
    async with ProcessPool(1, max_rss_mb=256, max_rss_name="TEST_MAX_RSS") as pool:

        async def call() -> None:
            with pytest.raises(HostCrashed, match=r"over the limit of 256 MiB \(TEST_MAX_RSS\)"):
                await pool.run(f.allocate_in_a_child, inbox.path, from_thread)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            child = int(await inbox.next_line())
        await wait_exit(child)  # killed with its host's process group
        assert await pool.run(f.add, 1, 2) == 3
