"""A Scalable deployment made of real processes for the chaos tests: a private Redis (its own
port, so FLUSHALL and pub/sub counts see only this test), a private MariaDB database, and any
number of grpc-front and worker processes started and stopped by the test.

Also the ledger's raw material: every job these tests send runs `sh -c` that appends the job's
tag to a file owned by the test, so how often each job *ran* is counted outside the server.
"""

from __future__ import annotations

import asyncio
import shlex
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from redis import Redis

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, ServerProcess
from tests.chaos.mariadb_instance import MariaDBInstance
from tests.chaos.redis_instance import RedisInstance
from tests.scalable.services import scalable_env

T = TypeVar("T")
POLL_S = 0.1  # how often a wait looks again
HANG_GUARD_S = 120.0  # a wait gives up only after this long: a hang guard, never a speed requirement


@dataclass
class Cluster:
    workdir: Path
    redis: RedisInstance
    env: dict[str, str]
    procs: list[ServerProcess] = field(default_factory=list)
    mariadb: MariaDBInstance | None = None  # a MariaDB server of the test's own, when asked for

    @property
    def prefix(self) -> str:
        return self.env["REDIS_KEY_PREFIX"]

    @property
    def runs_path(self) -> Path:
        """The file every job of these tests appends its tag to when it runs."""
        return self.workdir / "runs.txt"

    def start(self, mode: str, name: str, **extra_env: str) -> ServerProcess:
        proc = ServerProcess(self.workdir, {**self.env, **extra_env}, mode=mode, name=name)
        self.procs.append(proc)
        return proc.start()

    def redis_client(self) -> Redis:
        return Redis.from_url(self.redis.url)

    def runs(self) -> Counter[str]:
        """How many times each tag ran (from the ledger file, not from the server)."""
        if not self.runs_path.exists():
            return Counter()
        return Counter(line for line in self.runs_path.read_text().splitlines() if line)

    def queue_is_empty(self) -> bool:
        """Nothing of this deployment is queued or in flight in Redis: no further run can start."""
        client = self.redis_client()
        try:
            queues = client.keys(f"{self.prefix}queue:*") + client.keys(f"{self.prefix}inflight:*")
            return client.hlen(f"{self.prefix}queue-jobs") == 0 and all(
                (client.zcard(k) if client.type(k) == b"zset" else client.hlen(k)) == 0 for k in queues)
        finally:
            client.close()


@contextmanager
def private_cluster(workdir: Path, *, private_mariadb: bool = False) -> Iterator[Cluster]:
    """Private Redis + MariaDB database (on the shared server, or with `private_mariadb` on a
    MariaDB server of its own, for tests that restart it); every process started through the
    cluster is stopped (SIGTERM) at the end and must exit 0, the private servers last."""
    instance = RedisInstance(workdir).start()
    mariadb = MariaDBInstance(workdir).start() if private_mariadb else None
    try:
        with scalable_env() as env:
            env = {**env, "REDIS_URL": instance.url}
            if mariadb is not None:
                env.pop("MYSQL_UNIX_SOCKET", None)
                env.update(mariadb.env())
            cluster = Cluster(workdir, instance, env, mariadb=mariadb)
            try:
                yield cluster
            finally:
                codes = {p.log_path.name: p.stop() for p in cluster.procs if p.proc is not None}
            bad = {name: code for name, code in codes.items() if code != 0}
            assert not bad, f"processes did not exit cleanly: {bad}"
    finally:
        instance.stop()
        if mariadb is not None:
            mariadb.stop()


def ledger_worker(name: str, *, queue_type: data.QueueType = data.QueueType.NORMAL,
                  response_type: data.ResponseType = data.ResponseType.NO_RESULT,
                  channel: str | None = None) -> data.WorkerData:
    """A COMMAND worker running `sh`, storing every result, so each run is both counted in the
    ledger file and visible through JobResultService."""
    return data.WorkerData(name=name, runner_id=data.RunnerId(value=1),
                           runner_settings=bytes(runner_pb.CommandRunnerSettings(name="sh")),
                           response_type=response_type, queue_type=queue_type, channel=channel,
                           store_success=True, store_failure=True)


def ledger_args(cluster: Cluster, tag: str, *, gate: Path | None = None, work_s: float = 0.0) -> bytes:
    """Args of a job that (after `gate` exists, when given, and `work_s` of sleep) appends `tag`
    to the runs file and prints it. Waiting on a file keeps a job running until the test lets it
    end; sleeping keeps runs overlapping whatever races the test sets up."""
    wait = f"while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.05; done; " if gate is not None else ""
    if work_s:
        wait += f"sleep {work_s}; "
    script = f"{wait}echo {shlex.quote(tag)} >> {shlex.quote(str(cluster.runs_path))}; echo {shlex.quote(tag)}"
    return bytes(runner_pb.CommandArgs(args=["-c", script]))


async def results_of(c: Client, job_id: int) -> list[data.JobResult]:
    return [r async for r in c.job_result.find_list_by_job_id(svc.FindListByJobIdRequest(job_id=data.JobId(
        value=job_id)))]


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool],
                     guard_s: float = HANG_GUARD_S) -> T:
    """Probe until `done` says yes, and return the last value probed. Past `guard_s` it returns
    that value anyway, so the caller's assertion shows what was wrong instead of a bare timeout;
    the guard is generous, so a slow machine only makes this wait longer."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + guard_s
    while True:
        value = await probe()
        if done(value) or loop.time() > give_up:
            return value
        await asyncio.sleep(POLL_S)
