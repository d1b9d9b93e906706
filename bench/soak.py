"""Soak the server with the invariant checker: random seeds for as long as asked.

    python bench/soak.py --seconds 600 --mode both        # random seeds, both storage modes at once
    python bench/soak.py --seed 1234 --mode standalone    # replay one seed (as a failure prints it)
    python bench/soak.py --seed 272 --short               # a seed of the pytest suite (shorter sequences)

A seed's operations also depend on --short / --no-restarts / --no-faults: a failure prints the
exact command that replays it. The interleaving on the server is not replayed (lanes race).

Each mode has one server (Standalone: SQLite in a temp dir; Scalable: a private MariaDB database
and Redis key prefix, dropped at the end) that the sequences share; sequences that restart it
restart it in place. Every violating sequence is printed in full (seed, mode, operations,
what was observed); the last line is `sequences, operations, violations: S, O, V`.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import trio
import trio_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.invariants.harness import SequenceReport, run_sequence, running_server  # noqa: E402
from tests.invariants.ops import SOAK_PROFILE, TEST_PROFILE, Profile  # noqa: E402
from tests.invariants.server import services_available, storage_env  # noqa: E402


@dataclass
class Totals:
    sequences: int = 0
    operations: int = 0
    violating: list[SequenceReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds_by_mode: dict[str, float] = field(default_factory=dict)
    sequences_by_mode: dict[str, int] = field(default_factory=dict)


async def soak_mode(mode: str, env: dict[str, str], workdir: Path, seeds: list[int] | None, until: float,
                    profile: Profile, totals: Totals) -> None:
    rng = random.Random()
    started = time.monotonic()
    async with running_server(workdir, mode, env) as (server, rpc):
        queue = list(seeds) if seeds is not None else None
        while True:
            if queue is not None:
                if not queue:
                    break
                seed = queue.pop(0)
            else:
                if time.monotonic() >= until:
                    break
                seed = rng.randrange(1, 10**6)
            if not server.alive():
                totals.errors.append(f"{mode}: server died before seed {seed} (exit {server.proc.returncode}); "
                                     f"restarted. Log tail:\n{server.log_tail()}")
                await server.start()
            try:
                report = await run_sequence(server, rpc, seed, profile)
            except Exception as e:  # a harness failure is reported, and the soak goes on
                totals.errors.append(f"seed {seed} mode {mode}: the run itself failed: {type(e).__name__}: {e}")
                print(f"seed {seed} {mode}: ERROR {type(e).__name__}: {e}", flush=True)
                traceback.print_exception(e)
                continue
            totals.sequences += 1
            totals.operations += report.operations
            totals.sequences_by_mode[mode] = totals.sequences_by_mode.get(mode, 0) + 1
            kinds = sorted({f"I{v.invariant}:{v.kind}" for v in report.violations})
            timing = " ".join(f"{k}={v:.1f}" for k, v in report.phases.items())
            print(f"seed {seed} {mode}: {report.operations} ops, {report.seconds:.1f}s ({timing}), "
                  f"{len(report.violations)} violation(s) {' '.join(kinds)}", flush=True)
            if report.violations:
                totals.violating.append(report)
                print(report.render() + "\n", flush=True)
    totals.seconds_by_mode[mode] = time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300, help="how long to run random seeds (default 300)")
    parser.add_argument("--mode", choices=("standalone", "scalable", "both"), default="both")
    parser.add_argument("--seed", type=int, action="append", help="run exactly these seeds (repeatable)")
    parser.add_argument("--short", action="store_true", help="the pytest suite's shorter sequences")
    parser.add_argument("--no-restarts", action="store_true", help="never stop or kill the server")
    parser.add_argument("--no-faults", action="store_true", help="never inject storage faults")
    parser.add_argument("--workdir", type=Path, help="where servers keep files and logs (default: a temp dir)")
    parser.add_argument("--server-root", type=Path,
                        help="run the server code found there (a tree with jobworkerp/ and actors/, e.g. "
                             "`git archive COMMIT jobworkerp actors | tar -x -C DIR`) instead of this checkout's")
    args = parser.parse_args(argv)
    base = TEST_PROFILE if args.short else SOAK_PROFILE
    profile = Profile(min_ops=base.min_ops, max_ops=base.max_ops, lanes=base.lanes,
                      restarts=False if args.no_restarts else None, faults=False if args.no_faults else None)
    modes = ["standalone", "scalable"] if args.mode == "both" else [args.mode]
    if "scalable" in modes and (missing := services_available()):
        print(f"Scalable mode needs {missing}", file=sys.stderr)
        return 2
    if args.server_root:
        os.environ["JWTEST_SERVER_ROOT"] = str(args.server_root.resolve())
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="jw-soak-"))
    totals = Totals()
    until = time.monotonic() + args.seconds
    with ExitStack() as stack:
        envs = {mode: stack.enter_context(storage_env(mode)) for mode in modes}

        async def run_all() -> None:
            async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:  # one asyncio loop for gRPC
                for mode in modes:
                    (workdir / mode).mkdir(parents=True, exist_ok=True)
                    nursery.start_soon(soak_mode, mode, envs[mode], workdir / mode, args.seed, until, profile,
                                       totals)

        trio.run(run_all)
    for mode in modes:
        n, secs = totals.sequences_by_mode.get(mode, 0), totals.seconds_by_mode.get(mode, 0.0)
        print(f"{mode}: {n} sequences in {secs:.0f}s ({60 * n / secs if secs else 0:.1f} per minute)")
    for error in totals.errors:
        print(f"error: {error}")
    if totals.violating:
        print(f"logs: {workdir}")
        print("violations:")
        for report in totals.violating:
            for v in report.violations:
                print(f"  seed {report.seed} {report.mode}: {v.describe()}")
    violations = sum(len(r.violations) for r in totals.violating)
    print(f"sequences, operations, violations: {totals.sequences}, {totals.operations}, {violations}")
    return 1 if violations or totals.errors else 0


if __name__ == "__main__":
    sys.exit(main())
