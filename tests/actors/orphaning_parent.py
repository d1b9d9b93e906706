"""A parent process for the orphaned-host test: it opens a pool and runs a call that hangs, so
the test can SIGKILL it mid-call. Run as `python -m tests.actors.orphaning_parent FIFO`."""

from __future__ import annotations

import sys

import trio

from actors.process_pool import ProcessPool
from tests.actors import pool_funcs


async def _main(fifo: str) -> None:
    async with ProcessPool(1) as pool:
        await pool.run(pool_funcs.spawn_grandchild_report_both_and_hang, fifo)


if __name__ == "__main__":
    trio.run(_main, sys.argv[1])
