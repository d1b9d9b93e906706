"""The invariant checker on fixed seeds, in both storage modes at once, against real servers.

Each case generates the operation sequence of its seed (ops.py), runs it with racing lanes
against each mode's shared server (Standalone and Scalable concurrently, each on its own
server), waits for quiescence and checks the five invariants (checker.py). A failure prints,
per mode, the seed, every violation and the whole sequence; `pytest tests/invariants -k seed_N`
or `python bench/soak.py --seed N --mode MODE --short` replays it. `just soak` runs random seeds
for longer.

The seeds are sequences in which the soak found server bugs (on the server before the job-path
rewrite); they stay so that a fix is proven and stays proven. Interleavings are not
deterministic, so each was kept because it reproduced its bug on most runs; each is also an
ordinary random sequence checking everything else.
"""

from __future__ import annotations

import pytest
import trio
import trio_asyncio

from tests.invariants.harness import SequenceReport, run_sequence
from tests.invariants.ops import SOAK_PROFILE, TEST_PROFILE, Profile
from tests.invariants.rpc import open_rpc
from tests.invariants.server import InvariantServer

pytestmark = pytest.mark.timeout(480)

# seed: what it found
SEEDS: dict[int, str] = {
    1: "(a) jobs scheduled on a concurrency-1 channel never run: PENDING forever, no result",
    1357: "(b) queued jobs of a NORMAL worker vanish when it is updated to WITH_BACKUP: no result, status "
          "PENDING forever, Find finds nothing",
    272: "(c) failing scheduled jobs with a 100 ms CONSTANT retry end MAX_RETRY, then about one claim lease "
         "later run again from retried=0, forever; their job rows stay listed without a status",
    198145: "(d) jobs end with no result, status PENDING, Find nothing: queued jobs of a NORMAL worker "
            "updated to FORCED_RDB (the same wrong 'has a backup row' decision as (b))",
    621: "jobs scheduled for a worker that is then deleted stay PENDING forever (listed, never run, never "
         "dropped), besides (a)",
    960106: "a concurrency-1 channel with a due job always waiting (a fast periodic worker) never ran its "
            "queued jobs: the queue fetcher gave its slot away before looking at the queue (Scalable)",
}
# Seeds of `just soak`'s longer sequences (SOAK_PROFILE; replay with bench/soak.py --seed N).
SOAK_SEEDS: dict[int, str] = {
    303710: "Scalable: a FORCED_RDB job enqueued just before a SIGKILL kept its row but lost its PENDING "
            "status (written fire-and-forget after the reply), and a uniq_key taken by an enqueue killed "
            "before placing its job stayed taken for good",
}
CASES = [(seed, TEST_PROFILE) for seed in SEEDS] + [(seed, SOAK_PROFILE) for seed in SOAK_SEEDS]


async def _run(server: InvariantServer, seed: int, profile: Profile, reports: list[SequenceReport]) -> None:
    if not server.alive():  # an earlier case left it down: start it again on the same storage
        await server.start()
    async with open_rpc(server) as rpc:
        reports.append(await run_sequence(server, rpc, seed, profile))


@pytest.mark.parametrize(("seed", "profile"), CASES, ids=[f"seed_{seed}" for seed, _ in CASES])
async def test_invariants_hold(seed: int, profile: Profile, servers: dict[str, InvariantServer]) -> None:
    reports: list[SequenceReport] = []
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        for server in servers.values():
            nursery.start_soon(_run, server, seed, profile, reports)
    failed = [r.render() for r in reports if r.violations]
    assert not failed, "\n\n" + "\n\n".join(failed)
    if "scalable" not in servers:
        pytest.skip("Standalone passed; Scalable not run: Redis or MariaDB is not reachable")
