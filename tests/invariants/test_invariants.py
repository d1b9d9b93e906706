"""The invariant checker on fixed seeds, in both storage modes, against a real server.

Each case generates the operation sequence of its seed (see ops.py), runs it with racing lanes
against the mode's shared server, waits for quiescence and checks the five invariants
(checker.py). A failure prints the seed, the mode, every violation and the whole sequence;
`pytest tests/invariants -k 'seed_N and MODE'` or `python bench/soak.py --seed N --mode MODE`
replays it. `just soak` runs random seeds for longer.

REGRESSION seeds are sequences in which the soak found a server bug; they stay here so that a fix
is proven and stays proven (the interleaving is not deterministic, so each was chosen because it
reproduces its bug on most runs).
"""

from __future__ import annotations

import pytest
import trio_asyncio

from tests.invariants.harness import run_sequence
from tests.invariants.ops import TEST_PROFILE
from tests.invariants.rpc import open_rpc
from tests.invariants.server import InvariantServer

pytestmark = pytest.mark.timeout(180)

# Plain random sequences, run in both modes.
GENERAL_SEEDS = [3, 6]

# seed: (modes, what it found on the server it was found on)
REGRESSION: dict[int, tuple[tuple[str, ...], str]] = {
}

CASES = [(mode, seed) for seed in GENERAL_SEEDS for mode in ("standalone", "scalable")] + [
    (mode, seed) for seed, (modes, _) in REGRESSION.items() for mode in modes]


@pytest.mark.parametrize(("server", "seed"), CASES, ids=[f"{mode}-seed_{seed}" for mode, seed in CASES],
                         indirect=["server"])
async def test_invariants_hold(server: InvariantServer, seed: int) -> None:
    if not server.alive():  # a case before this one left it down: start it again on the same storage
        await server.start()
    async with trio_asyncio.open_loop(), open_rpc(server) as rpc:
        report = await run_sequence(server, rpc, seed, TEST_PROFILE)
    assert not report.violations, "\n" + report.render()
