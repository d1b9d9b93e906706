"""Concurrent runners on a pool's shared host: jobs run on threads of one process, a cancelled
job is stopped by its runner alone, and the host and its other jobs live on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from actors.process_pool import ProcessPool
from jobworkerp.app import RUNNER_HOST_PRELOAD
from jobworkerp.config import load_config
from jobworkerp.proto.jobworkerp.runner import CommandArgs, CommandRunnerSettings
from jobworkerp.runners.host import run_job
from jobworkerp.runners.plugins import proto_messages
from jobworkerp.runners.policy import host_environment
from tests.actors.fifo_inbox import FifoInbox
from tests.actors.test_process_pool import process_exists, wait_exit

pytestmark = [pytest.mark.trio, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
COMMAND_REF = "jobworkerp.runners.command:CommandRunner"
SLEEP_PLUGIN = ROOT / "plugins" / "sleep" / "__init__.py"
SLEEP_REF = f"plugin:{SLEEP_PLUGIN}:SleepRunner"


def pool() -> ProcessPool:
    return ProcessPool(1, preload=RUNNER_HOST_PRELOAD, env=host_environment(load_config({})))


def sleep_args(ms: int) -> bytes:
    from plugins.sleep import ARGS_PROTO

    return bytes(proto_messages(ARGS_PROTO).SleepArgs(ms=ms).SerializeToString())


async def test_the_first_jobs_of_a_plugin_load_it_from_many_threads_at_once_and_all_run() -> None:
    """Twenty threads import the plugin file together: none may see it half-executed (a bench
    run failed its first jobs with "cannot load runner" before plugins.py took a lock)."""
    outputs: list[list[bytes]] = []
    async with pool() as p:

        async def job() -> None:
            outputs.append(await p.run_shared(run_job, SLEEP_REF, b"", sleep_args(1), 7, False))

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(job)
        assert p.stats["alive"] == 1
    assert outputs == [[b"slept 1 ms"]] * 20


async def test_a_cancelled_command_job_kills_its_command_tree_and_the_host_runs_on(tmp_path: Path) -> None:
    inbox = FifoInbox(tmp_path / "inbox.fifo")
    script = f'sleep 600 & echo $$ $! > {inbox.path}; wait'
    settings = bytes(CommandRunnerSettings(name="sh"))
    try:
        async with pool() as p:
            host = await p.run_shared(os.getpid)
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(p.run_shared, run_job, COMMAND_REF, settings,
                                       bytes(CommandArgs(args=["-c", script])), 1, False)
                    shell, sleeper = (int(pid) for pid in (await inbox.next_line()).split())
                    scope.cancel()
            await wait_exit(shell)
            await wait_exit(sleeper)  # the command's own child too, not only the command
            assert process_exists(host)
            out = await p.run_shared(run_job, COMMAND_REF, bytes(CommandRunnerSettings(name="echo")),
                                     bytes(CommandArgs(args=["still here"])), 1, False)
            assert out == [b"still here\n"]
            assert await p.run_shared(os.getpid) == host
            assert p.stats["killed"] == 0 and p.stats["restarts"] == 0
    finally:
        await inbox.aclose()


async def test_jobs_of_one_static_worker_run_at_once_each_on_a_runner_of_its_own() -> None:
    settings = bytes(CommandRunnerSettings(name="sh"))
    outputs: list[list[bytes]] = []
    async with pool() as p:

        async def job(n: int) -> None:
            args = bytes(CommandArgs(args=["-c", f"echo {n}"]))
            outputs.append(await p.run_shared(run_job, COMMAND_REF, settings, args, 1, True))

        async with trio.open_nursery() as nursery:
            for n in range(10):
                nursery.start_soon(job, n)
    assert sorted(outputs) == sorted([[f"{n}\n".encode()] for n in range(10)])
