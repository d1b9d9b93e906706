"""One sequence end to end — generate, drive, quiesce, check, clean up — and its report.

Used by the pytest suite (fixed seeds) and by bench/soak.py (random seeds for a while).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from tests.invariants.checker import Checker, Violation
from tests.invariants.driver import Driver
from tests.invariants.ops import TEST_PROFILE, Profile, Sequence, generate
from tests.invariants.rpc import Rpc, open_rpc
from tests.invariants.server import InvariantServer, storage_env


@dataclass
class SequenceReport:
    seed: int
    mode: str
    sequence: Sequence
    operations: int
    violations: list[Violation]
    seconds: float
    quiesced: bool
    faults_fired: list[str] = field(default_factory=list)
    skipped: int = 0
    phases: dict[str, float] = field(default_factory=dict)
    profile: Profile = TEST_PROFILE
    worker_calls: list[str] = field(default_factory=list)  # how each worker change was answered
    skipped_ops: list[str] = field(default_factory=list)

    def render(self) -> str:
        """Everything needed to reproduce and understand a failure."""
        lines = [
            f"seed {self.seed}, mode {self.mode}: {len(self.violations)} violation(s) "
            f"({self.operations} operations run, {self.skipped} skipped, {self.seconds:.1f}s, "
            f"{'quiesced' if self.quiesced else 'did NOT quiesce'}; "
            f"{', '.join(f'{k} {v:.1f}s' for k, v in self.phases.items())})",
            f"reproduce: python bench/soak.py --seed {self.seed} --mode {self.mode} {self.profile.soak_flags()}"
            + (f"   or   pytest tests/invariants -k seed_{self.seed}   (if the seed is one of its cases)"
               if self.profile == TEST_PROFILE else ""),
        ]
        if self.faults_fired:
            lines.append(f"injected faults that fired: {', '.join(self.faults_fired)}")
        lines += [f"  {v.describe()}" for v in self.violations]
        lines.append(self.sequence.describe())
        if self.violations:
            lines += ["worker changes as answered:", *(f"  {c}" for c in self.worker_calls)]
            lines += [f"skipped: {op}" for op in self.skipped_ops]
        return "\n".join(lines)


async def run_sequence(server: InvariantServer, rpc: Rpc, seed: int, profile: Profile = TEST_PROFILE
                       ) -> SequenceReport:
    seq = generate(seed, profile)
    nonce = f"{server.mode[:2]}{seed}-{secrets.token_hex(3)}"
    driver = Driver(seq, server, rpc, server.mode, nonce)
    checker = Checker(driver)
    fired_before = len(server.fired_faults())
    started = trio.current_time()
    phases: dict[str, float] = {}
    mark = started

    def phase(name: str) -> None:
        nonlocal mark
        phases[name] = trio.current_time() - mark
        mark = trio.current_time()

    async with trio.open_nursery() as waiters:
        driver.waiters = waiters
        await driver.setup()
        await driver.run_lanes()
        phase("ops")
        obs = await checker.quiesce()
        phase("quiesce")
        if not server.alive():  # nobody stopped it: a crash is a finding, and cleanup needs a server
            checker.flag(0, "server-crashed", "server", f"exited with {server.proc and server.proc.returncode}; "
                         f"log tail:\n{server.log_tail(20)}")
            await server.start()
            obs = await checker.observe()
        await checker.check(obs)
        phase("check")
        waiters.cancel_scope.cancel()  # only now: a cancelled DIRECT call deletes its job
    await checker.probe_uniq_keys_and_clean_up(obs)
    phase("cleanup")
    return SequenceReport(
        seed=seed, mode=server.mode, sequence=seq, operations=driver.ledger.operations_done,
        violations=checker.violations, seconds=trio.current_time() - started, quiesced=checker.quiesced,
        faults_fired=server.fired_faults()[fired_before:], skipped=len(driver.ledger.skipped), phases=phases,
        profile=profile,
        worker_calls=[f"{m.sym}: {v.outcome()}" for m in driver.ledger.workers.values() for v in m.versions],
        skipped_ops=list(driver.ledger.skipped),
    )


@asynccontextmanager
async def running_server(workdir: Path, mode: str, env: dict[str, str]) -> AsyncIterator[tuple[InvariantServer, Rpc]]:
    """A started server (on storage prepared by `storage_env`) and an Rpc to it; stopped after."""
    server = InvariantServer(workdir, mode, env)
    await server.start()
    try:
        async with open_rpc(server) as rpc:
            yield server, rpc
    finally:
        if server.alive():
            await server.stop(kill=False)


__all__ = ["SequenceReport", "run_sequence", "running_server", "storage_env"]
