"""Chaos scenarios, shared by the tests in tests/chaos/ and by bench/chaos.py.

Each scenario drives a real Scalable deployment — a private Redis (tests/chaos/redis_instance.py),
a private MariaDB database, grpc-front and worker processes — through faults while a steady load
of WITH_BACKUP jobs runs, and returns a `Tally` computed from a ledger kept here, never from what
the server says about itself: every Enqueue the load made is recorded as accepted (with the job
id), refused (with the gRPC status) or ambiguous (the connection broke mid-call: the job may or
may not exist, as in any queue). After the faults, every accepted job must end with one final
result; an accepted job without one is lost, one with two is duplicated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis
from grpclib.exceptions import GRPCError

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, ServerProcess, connect
from tests.chaos.cluster import Cluster, eventually, ledger_worker, private_cluster, results_of
from tests.chaos.mariadb_instance import MariaDBInstance
from tests.chaos.redis_instance import RedisInstance

FINAL_WAIT_S = 180.0  # a hang guard only: how long the ledger waits for accepted jobs to end
ENQUEUE_PAUSE_S = 0.01  # between two enqueues of the steady load
RETRY_PAUSE_S = 0.1  # after a refused or broken enqueue


@dataclass
class Tally:
    """One scenario's row of the chaos table."""

    scenario: str
    sent: int = 0  # Enqueue calls made
    accepted: int = 0  # answered with a job id
    refused: list[str] = field(default_factory=list)  # gRPC status of each refused Enqueue
    ambiguous: int = 0  # the connection broke mid-call
    completed: int = 0  # accepted jobs with exactly one final result
    lost: int = 0  # accepted jobs with no final result
    duplicated: int = 0  # accepted jobs with more than one final result
    recovery_s: float = 0.0  # longest time from the end of a fault until jobs are both accepted and completed again

    def row(self) -> list[str]:
        return [self.scenario, str(self.sent), str(self.completed), str(self.lost), str(self.duplicated),
                f"{self.recovery_s:.1f}"]


@dataclass
class Ledger:
    accepted: dict[int, float] = field(default_factory=dict)  # job id -> when it was accepted (epoch s)
    refused: list[str] = field(default_factory=list)
    ambiguous: int = 0
    sent: int = 0


@dataclass
class Deployment:
    """Fronts and workers of one private cluster (tests/chaos/cluster.py), which the scenarios
    kill and replace."""

    cluster: Cluster
    fronts: list[ServerProcess]
    workers: list[ServerProcess]

    @property
    def redis(self) -> RedisInstance:
        return self.cluster.redis

    @property
    def mariadb(self) -> MariaDBInstance | None:
        return self.cluster.mariadb

    def kill(self, proc: ServerProcess) -> None:
        """kill -9: no shutdown of any kind (and no clean exit to check at the end)."""
        assert proc.proc is not None
        proc.proc.kill()
        proc.proc.wait()
        self.cluster.procs.remove(proc)

    def restart(self, proc: ServerProcess) -> None:
        """Start a process in place of one that died: a new instance on the same port."""
        replacement = ServerProcess(self.cluster.workdir, {**self.cluster.env, "GRPC_ADDR": f"127.0.0.1:{proc.port}"},
                                    mode=proc.mode, name=f"{proc.log_path.stem}+")
        replacement.port = proc.port
        self.cluster.procs.append(replacement)
        replacement.start()
        group = self.fronts if proc in self.fronts else self.workers
        group[group.index(proc)] = replacement


@contextmanager
def deployment(workdir: Path, *, fronts: int = 1, workers: int = 1, private_mariadb: bool = False
               ) -> Iterator[Deployment]:
    with private_cluster(workdir, private_mariadb=private_mariadb) as cluster:
        yield Deployment(cluster,
                         [cluster.start("grpc-front", f"front{i}") for i in range(fronts)],
                         [cluster.start("worker", f"worker{i}") for i in range(workers)])


async def create_backed_worker(c: Client, name: str = "chaos") -> data.WorkerId:
    """A COMMAND worker whose jobs are WITH_BACKUP and store every result."""
    reply = await c.worker.create(ledger_worker(name, queue_type=data.QueueType.WITH_BACKUP))
    assert reply.id is not None
    return reply.id


def _job_request(worker_id: data.WorkerId, n: int, run_s: float) -> svc.JobRequest:
    script = f"sleep {run_s}; echo j{n}" if run_s else f"echo j{n}"
    return svc.JobRequest(worker_id=worker_id, args=bytes(runner_pb.CommandArgs(args=["-c", script])))


async def steady_load(ports: Callable[[], list[int]], worker_id: data.WorkerId, ledger: Ledger, jobs: int, *,
                      run_s: float = 0.0, progress: Callable[[int], Awaitable[None]] | None = None) -> None:
    """Enqueue until `jobs` were accepted, round robin over the fronts `ports()` names now
    (reconnecting after a broken call); `progress(accepted)` runs after each acceptance."""
    n = 0
    while len(ledger.accepted) < jobs:
        port = ports()[n % len(ports())]
        async with connect(port) as c:
            while len(ledger.accepted) < jobs:
                n += 1
                ledger.sent += 1
                try:
                    job_id = (await c.job.enqueue(_job_request(worker_id, n, run_s), timeout=30)).id.value
                except GRPCError as e:  # refused: the client knows, nothing was accepted
                    ledger.refused.append(f"{e.status.name}: {e.message}")
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                except Exception:  # the connection broke mid-call (a killed front): ambiguous
                    ledger.ambiguous += 1
                    await asyncio.sleep(RETRY_PAUSE_S)
                    break  # reconnect (maybe to another front)
                ledger.accepted[job_id] = time.time()
                if progress is not None:
                    await progress(len(ledger.accepted))
                await asyncio.sleep(ENQUEUE_PAUSE_S)


async def final_results(c: Client, job_ids: list[int], *, wait_s: float = FINAL_WAIT_S
                        ) -> dict[int, list[data.JobResult]]:
    """Every stored result of each job, once each has one (or after `wait_s`: then the ones
    without a result are lost)."""
    async def probe() -> dict[int, list[data.JobResult]]:
        return {job_id: await results_of(c, job_id) for job_id in job_ids}

    return await eventually(probe, lambda results: all(results.values()), guard_s=wait_s)


def tally(scenario: str, ledger: Ledger, results: dict[int, list[data.JobResult]], fault_ends: list[float]
          ) -> Tally:
    """Fold the ledger and the stored results into one row. Recovery is measured from each
    fault's end until the deployment both accepts a job again (the first Enqueue answered after
    it) and completes one (the first result that ended after it: its report needed storage, so
    the worker side is back) — not until a job accepted after the fault completes, which would
    also count the queue's backlog."""
    t = Tally(scenario, sent=ledger.sent, accepted=len(ledger.accepted), refused=list(ledger.refused),
              ambiguous=ledger.ambiguous)
    ends: list[float] = []
    for rs in results.values():
        finals = [r for r in rs if r.data.status != data.ResultStatus.ERROR_AND_RETRY]
        ends += [r.data.end_time / 1000 for r in rs]
        if not finals:
            t.lost += 1
        elif len(finals) == 1:
            t.completed += 1
        else:
            t.completed += 1
            t.duplicated += 1
    for end in fault_ends:
        accepted = [at for at in ledger.accepted.values() if at >= end]
        completed = [at for at in ends if at >= end]
        if accepted and completed:
            t.recovery_s = max(t.recovery_s, min(accepted) - end, min(completed) - end)
    return t


def kill_redis_clients(redis_url: str) -> int:
    """CLIENT KILL every connection of the deployment's processes (normal and pub/sub), not
    this one: the connections drop, Redis itself stays up."""
    admin = redis.Redis.from_url(redis_url)
    try:
        killed = 0
        for kind in ("normal", "pubsub"):
            killed += int(admin.client_kill_filter(_type=kind, skipme=True))
        return killed
    finally:
        admin.close()


# --- the scenarios ------------------------------------------------------------------------------

async def _load_with_faults(d: Deployment, name: str, jobs: int, faults_at: list[int],
                            fault: Callable[[int], Awaitable[None]], *, run_s: float = 0.0) -> Tally:
    """Run `jobs` through the deployment; when the count of accepted jobs reaches each of
    `faults_at`, run `fault(i)` (the load goes on meanwhile). Returns the tally."""
    async with connect(d.fronts[0].port) as c:
        worker_id = await create_backed_worker(c)
    ledger, fault_ends = Ledger(), []
    pending = list(faults_at)
    triggers: asyncio.Queue[int] = asyncio.Queue()

    async def progress(accepted: int) -> None:
        while pending and accepted >= pending[0]:
            pending.pop(0)
            triggers.put_nowait(len(faults_at) - len(pending) - 1)

    async def inject() -> None:
        for _ in faults_at:
            await fault(await triggers.get())
            fault_ends.append(time.time())

    injector = asyncio.ensure_future(inject())
    await steady_load(lambda: [f.port for f in d.fronts], worker_id, ledger, jobs, run_s=run_s,
                      progress=progress)
    await injector
    async with connect(d.fronts[0].port) as c:
        results = await final_results(c, list(ledger.accepted))
    return tally(name, ledger, results, fault_ends)


async def redis_restart(d: Deployment, *, jobs: int = 60, outage_s: float = 2.0) -> Tally:
    """Redis goes away (SHUTDOWN, AOF kept) for `outage_s` and comes back, a third into the load."""

    async def fault(_: int) -> None:
        await asyncio.to_thread(d.redis.stop)
        await asyncio.sleep(outage_s)
        await asyncio.to_thread(d.redis.start)

    return await _load_with_faults(d, "redis restart", jobs, [jobs // 3], fault)


async def redis_connections_cut(d: Deployment, *, jobs: int = 60, cuts: int = 3) -> Tally:
    """CLIENT KILL of every connection the deployment holds, `cuts` times during the load
    (jobs run 0.2 s each, so some are running at every cut)."""

    async def fault(_: int) -> None:
        await asyncio.to_thread(kill_redis_clients, d.redis.url)

    at = [jobs * (i + 1) // (cuts + 1) for i in range(cuts)]
    return await _load_with_faults(d, "redis connections cut", jobs, at, fault, run_s=0.2)


async def mariadb_restart(d: Deployment, *, jobs: int = 60, outage_s: float = 3.0) -> Tally:
    """The database goes away (a clean shutdown) for `outage_s` and comes back, a third into the
    load (jobs run 0.2 s each, so some are running while it is down)."""
    mariadb = d.mariadb
    assert mariadb is not None, "a deployment with private_mariadb=True"

    async def fault(_: int) -> None:
        await asyncio.to_thread(mariadb.stop)
        await asyncio.sleep(outage_s)
        await asyncio.to_thread(mariadb.start)

    return await _load_with_faults(d, "mariadb restart", jobs, [jobs // 3], fault, run_s=0.2)


async def kill_workers(d: Deployment, *, jobs: int = 200, kills: int = 5) -> Tally:
    """kill -9 of a worker process `kills` times during the load, each replaced at once."""

    async def fault(i: int) -> None:
        victim = d.workers[i % len(d.workers)]
        await asyncio.to_thread(d.kill, victim)
        await asyncio.to_thread(d.restart, victim)

    at = [jobs * (i + 1) // (kills + 1) for i in range(kills)]
    return await _load_with_faults(d, "kill -9 worker", jobs, at, fault, run_s=0.2)


async def kill_fronts(d: Deployment, *, jobs: int = 200, kills: int = 5) -> Tally:
    """kill -9 of a grpc-front `kills` times during the load, each replaced at once; the load
    goes round robin over the fronts and reconnects after a broken call."""

    async def fault(i: int) -> None:
        victim = d.fronts[i % len(d.fronts)]
        await asyncio.to_thread(d.kill, victim)
        await asyncio.to_thread(d.restart, victim)

    at = [jobs * (i + 1) // (kills + 1) for i in range(kills)]
    return await _load_with_faults(d, "kill -9 grpc-front", jobs, at, fault)
