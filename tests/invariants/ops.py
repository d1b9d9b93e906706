"""Operation sequences, generated from a seed.

A sequence is pure data: the same seed always gives the same operations (random.Random(seed)
drives every choice), so a failing seed can be replayed. What is NOT reproducible is the exact
interleaving on the server — the operations run in several concurrent lanes — which is the
point: the RPCs genuinely race.

Workers and jobs are named symbolically (`w2`, job ref 7), because ids exist only once the server
has answered; an operation whose target does not exist (yet) when its turn comes is skipped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

RUNNERS = ("faulty", "true", "false", "sleep")  # faulty plugin, or COMMAND with that executable
FAULTY_ACTIONS = ("ok", "fail", "retry", "segfault", "exit", "hang")
RESPONSE_TYPES = ("NO_RESULT", "DIRECT", "LISTEN_AFTER")
QUEUE_TYPES = ("NORMAL", "WITH_BACKUP", "FORCED_RDB")
WHEN = ("now", "soon", "far")
PRIORITIES = ("LOW", "MEDIUM", "HIGH")
FAULT_OPS = ("queue.pop", "queue.ack", "bus.publish", "status.set")
SOON_MS = (250, 400, 700)  # run_after_time this far ahead: beyond the fetch interval, so stored rows
FAR_MS = 600_000  # stays scheduled for the whole sequence
HANG_TIMEOUT_MS = 400  # job timeout of `hang` jobs (their runner host is killed then)
JOB_TIMEOUT_MS = 8000  # every other job: bounded, so a DIRECT caller never waits for a year


@dataclass(frozen=True)
class WorkerSpec:
    """What the test asks a worker to be. store_success / store_failure are always on, so every
    final result is visible in storage (and LISTEN_AFTER is valid)."""

    runner: str
    response: str = "NO_RESULT"
    queue: str = "NORMAL"
    channel: str | None = None
    periodic_ms: int = 0
    retry: tuple[int, int] | None = None  # CONSTANT (interval ms, max_retry)
    next_workers: tuple[str, ...] = ()  # worker symbols

    def describe(self) -> str:
        parts = [self.runner, self.response, self.queue]
        if self.channel:
            parts.append(f"channel={self.channel}")
        if self.periodic_ms:
            parts.append(f"periodic={self.periodic_ms}ms")
        if self.retry:
            parts.append(f"retry=CONSTANT({self.retry[0]}ms,max {self.retry[1]})")
        if self.next_workers:
            parts.append(f"next={'+'.join(self.next_workers)}")
        return " ".join(parts)


@dataclass(frozen=True)
class CreateWorker:
    sym: str
    spec: WorkerSpec

    def describe(self) -> str:
        return f"create {self.sym}: {self.spec.describe()}"


@dataclass(frozen=True)
class UpdateWorker:
    sym: str
    spec: WorkerSpec

    def describe(self) -> str:
        return f"update {self.sym}: {self.spec.describe()}"


@dataclass(frozen=True)
class DeleteWorker:
    sym: str

    def describe(self) -> str:
        return f"delete worker {self.sym}"


@dataclass(frozen=True)
class Enqueue:
    ref: int  # this sequence's job number
    sym: str
    action: str  # faulty action, or "run" for a COMMAND worker
    when: str
    soon_ms: int = 0
    uniq: str | None = None
    priority: str = "MEDIUM"
    listen: bool = False  # issue a Listen for it (always for LISTEN_AFTER)
    sleep_s: str = "0.2"  # the `sleep` COMMAND's argument

    def describe(self) -> str:
        extra = f" +{self.soon_ms}ms" if self.when == "soon" else ""
        uniq = f" uniq={self.uniq}" if self.uniq else ""
        listen = " +listen" if self.listen else ""
        return f"enqueue j{self.ref} -> {self.sym} {self.action} {self.when}{extra}{uniq} {self.priority}{listen}"


@dataclass(frozen=True)
class DeleteJob:
    ref: int | None  # a job of this sequence by number, or None: one the server lists as alive
    pick: int = 0  # which of the listed ones (modulo their number)

    def describe(self) -> str:
        return f"delete job j{self.ref}" if self.ref is not None else f"delete a listed live job (pick {self.pick})"


@dataclass(frozen=True)
class Restart:
    kill: bool  # SIGKILL, else SIGTERM (graceful)

    def describe(self) -> str:
        return "restart after SIGKILL" if self.kill else "restart after SIGTERM"


@dataclass(frozen=True)
class Fault:
    ops: tuple[str, ...]

    def describe(self) -> str:
        return f"fault: next {' + '.join(self.ops)} fails once"


Op = CreateWorker | UpdateWorker | DeleteWorker | Enqueue | DeleteJob | Restart | Fault


@dataclass(frozen=True)
class Step:
    lane: int
    delay_ms: int  # pause before the op, within its lane
    op: Op


@dataclass(frozen=True)
class Profile:
    """How big a sequence is; the seed decides the rest."""

    min_ops: int = 14
    max_ops: int = 22
    lanes: int = 3
    restarts: bool | None = None  # None: the seed decides
    faults: bool | None = None

    def soak_flags(self) -> str:
        """The bench/soak.py options that generate the same sequences (seed -> ops depends on them)."""
        flags = ["--short"] if (self.min_ops, self.max_ops) == (TEST_PROFILE_OPS) else []
        flags += ["--no-restarts"] if self.restarts is False else []
        flags += ["--no-faults"] if self.faults is False else []
        return " ".join(flags)


TEST_PROFILE_OPS = (14, 22)


TEST_PROFILE = Profile(*TEST_PROFILE_OPS)
SOAK_PROFILE = Profile(min_ops=25, max_ops=50, lanes=3)


@dataclass
class Sequence:
    seed: int
    setup: list[CreateWorker]
    steps: list[Step]
    lanes: int
    restarts: bool
    faults: bool
    notes: list[str] = field(default_factory=list)

    @property
    def operation_count(self) -> int:
        return len(self.setup) + len(self.steps)

    def lane_steps(self, lane: int) -> list[Step]:
        return [s for s in self.steps if s.lane == lane]

    def describe(self) -> str:
        lines = [f"seed {self.seed}: {self.operation_count} ops, {self.lanes} lanes, "
                 f"restarts={'on' if self.restarts else 'off'}, faults={'on' if self.faults else 'off'}"]
        lines += [f"  setup  {op.describe()}" for op in self.setup]
        lines += [f"  lane{s.lane} +{s.delay_ms:>3}ms {s.op.describe()}" for s in self.steps]
        return "\n".join(lines)


def _valid(spec: WorkerSpec) -> WorkerSpec:
    """Repair a spec the server would reject (DIRECT allows neither periodic nor FORCED_RDB)."""
    if spec.response == "DIRECT":
        spec = replace(spec, periodic_ms=0, queue="NORMAL" if spec.queue == "FORCED_RDB" else spec.queue)
    return spec


def _random_spec(rng: random.Random, runner: str, others: list[str]) -> WorkerSpec:
    """A valid random worker; `others` are the (non-periodic) faulty workers it may chain to."""
    response = rng.choices(RESPONSE_TYPES, weights=(4, 3, 4))[0]
    periodic = rng.choice((400, 600, 900)) if response != "DIRECT" and rng.random() < 0.12 else 0
    retry = (rng.choice((100, 200, 300)), rng.randint(0, 3)) if rng.random() < 0.6 else None
    nxt = (rng.choice(others),) if runner == "faulty" and others and rng.random() < 0.25 else ()
    return _valid(WorkerSpec(
        runner=runner,
        response=response,
        queue=rng.choices(QUEUE_TYPES, weights=(5, 3, 2))[0],
        channel="single" if rng.random() < 0.3 else None,
        periodic_ms=periodic,
        retry=retry,
        next_workers=nxt,
    ))


def _mutate(rng: random.Random, spec: WorkerSpec, faulty_syms: list[str], *, chained_to: bool = False
            ) -> WorkerSpec:
    """Change one or two settings; queue and response type flips are the likeliest.

    A worker never becomes periodic while another chains to it, and chains never point at a
    periodic worker (`faulty_syms` excludes them): every chained job of a periodic worker lives
    forever, so a periodic chain makes jobs multiply without end — a load the machine cannot
    drain (bounding that is a resource-limits question, not one of a job's life)."""
    for _ in range(rng.choice((1, 1, 2))):
        what = rng.choices(("queue", "response", "retry", "periodic", "next", "channel"),
                           weights=(6, 5, 2, 1, 1, 1))[0]
        if what == "queue":
            spec = replace(spec, queue=rng.choice([q for q in QUEUE_TYPES if q != spec.queue]))
        elif what == "response":
            spec = replace(spec, response=rng.choice([r for r in RESPONSE_TYPES if r != spec.response]))
        elif what == "retry":
            spec = replace(spec, retry=None if spec.retry else (rng.choice((100, 200)), rng.randint(1, 3)))
        elif what == "periodic" and (spec.periodic_ms or not chained_to):
            spec = replace(spec, periodic_ms=0 if spec.periodic_ms else rng.choice((400, 600)))
            if spec.periodic_ms and spec.response == "DIRECT":
                spec = replace(spec, response="NO_RESULT")
        elif what == "next" and spec.runner == "faulty" and faulty_syms:
            spec = replace(spec, next_workers=() if spec.next_workers else (rng.choice(faulty_syms),))
        elif what == "channel":
            spec = replace(spec, channel=None if spec.channel else "single")
    return _valid(spec)


def generate(seed: int, profile: Profile = TEST_PROFILE) -> Sequence:
    """The operation sequence of `seed` (pure: same seed, same sequence)."""
    rng = random.Random(seed)
    restarts = profile.restarts if profile.restarts is not None else rng.random() < 0.3
    faults = profile.faults if profile.faults is not None else rng.random() < 0.3
    specs: dict[str, WorkerSpec] = {}
    setup: list[CreateWorker] = []
    n_initial = rng.randint(2, 4)
    # At least one faulty worker (it has every outcome); chains point at faulty workers.
    runners = ["faulty"] + [rng.choice(RUNNERS) for _ in range(n_initial - 1)]
    for i, runner in enumerate(runners):
        sym = f"w{i}"
        faulty_syms = [s for s, sp in specs.items() if sp.runner == "faulty" and not sp.periodic_ms]
        specs[sym] = _random_spec(rng, runner, faulty_syms)
        setup.append(CreateWorker(sym, specs[sym]))
    deleted: set[str] = set()
    steps: list[Step] = []
    next_ref = 0
    n_restarts = n_faults = 0
    uniq_pool = [f"u{i}" for i in range(3)]
    target_ops = rng.randint(profile.min_ops, profile.max_ops)
    while len(steps) < target_ops:
        lane = rng.randrange(profile.lanes)
        delay = rng.choice((0, 0, 10, 30, 60, 100, 150, 250))
        live = [s for s in specs if s not in deleted]
        faulty_syms = [s for s in live if specs[s].runner == "faulty" and not specs[s].periodic_ms]
        chain_targets = {t for s in live for t in specs[s].next_workers}
        kinds = ["enqueue", "update", "delete_job", "create", "delete_worker"]
        weights = [55, 15, 10, 3, 2]
        if restarts and n_restarts < 2:
            kinds.append("restart")
            weights.append(2)
        if faults and n_faults < 3:
            kinds.append("fault")
            weights.append(3)
        kind = rng.choices(kinds, weights=weights)[0]
        if kind == "enqueue" and live:
            sym = rng.choice(live)
            spec = specs[sym]
            burst = rng.choice((1, 1, 1, 2, 3, 4))
            for i in range(burst):
                action = rng.choices(FAULTY_ACTIONS, weights=(8, 2, 4, 1, 1, 1))[0] if spec.runner == "faulty" \
                    else "run"
                when = "now" if spec.response == "DIRECT" else rng.choices(WHEN, weights=(13, 5, 2))[0]
                steps.append(Step(lane, delay if i == 0 else 0, Enqueue(
                    ref=next_ref, sym=sym, action=action, when=when,
                    soon_ms=rng.choice(SOON_MS) if when == "soon" else 0,
                    uniq=rng.choice(uniq_pool) if rng.random() < 0.2 else None,
                    priority=rng.choice(PRIORITIES),
                    listen=spec.response == "LISTEN_AFTER" or rng.random() < 0.3,
                    sleep_s=rng.choice(("0.1", "0.2", "0.4")),
                )))
                next_ref += 1
        elif kind == "update" and live:
            sym = rng.choice(live)
            specs[sym] = _mutate(rng, specs[sym], [s for s in faulty_syms if s != sym], chained_to=sym in chain_targets)
            steps.append(Step(lane, delay, UpdateWorker(sym, specs[sym])))
        elif kind == "delete_job":
            if next_ref and rng.random() < 0.75:
                steps.append(Step(lane, delay, DeleteJob(ref=rng.randrange(next_ref))))
            else:
                steps.append(Step(lane, delay, DeleteJob(ref=None, pick=rng.randrange(1000))))
        elif kind == "create":
            sym = f"w{len(specs)}"
            specs[sym] = _random_spec(rng, rng.choice(RUNNERS), faulty_syms)
            steps.append(Step(lane, delay, CreateWorker(sym, specs[sym])))
        elif kind == "delete_worker" and len(live) > 1:
            sym = rng.choice(live)
            deleted.add(sym)
            steps.append(Step(lane, delay, DeleteWorker(sym)))
        elif kind == "restart":
            n_restarts += 1
            steps.append(Step(lane, delay, Restart(kill=rng.random() < 0.5)))
        elif kind == "fault":
            n_faults += 1
            ops = tuple(sorted(rng.sample(FAULT_OPS, rng.choice((1, 1, 2)))))
            steps.append(Step(lane, delay, Fault(ops)))
    return Sequence(seed=seed, setup=setup, steps=steps, lanes=profile.lanes, restarts=restarts, faults=faults)
