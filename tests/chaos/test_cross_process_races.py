"""Races across processes (issue 10, scenario 8): two grpc-front processes and one worker on a
private Redis and a private MariaDB database.

* 50 concurrent enqueues with one uniq_key, split across both fronts: exactly one is accepted, the
  rest get ALREADY_EXISTS, and once that job has ended the key takes a new job at once.
* 200 concurrent Listen calls on one job, split across both fronts (and 40 more that hang up
  before it ends): all 200 get the same result, and afterwards no pub/sub subscription of a result
  topic is left in Redis (PUBSUB NUMSUB / PUBSUB CHANNELS).

The ledger is the test's: what each call answered, and a file every run appends its tag to
(tests/chaos/cluster.py). The jobs wait on a gate file, so the race happens while the job is
known to be alive, however slow the machine.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, ServerProcess, connect, run
from tests.chaos.cluster import Cluster, eventually, ledger_args, ledger_worker, private_cluster

pytestmark = pytest.mark.timeout(300)

ENQUEUES = 50
LISTENERS = 200
DEPARTING = 40  # listeners that hang up before the job ends
CONNECTIONS_PER_FRONT = 4  # the listeners are spread over several HTTP/2 connections per front
LISTEN_TIMEOUT_MS = 300_000  # server-side wait of a Listen: a hang guard, never reached
KEY = "one-key"
OUTAGE_LISTENERS = 20


@dataclass
class Deployment:
    cluster: Cluster
    fronts: list[ServerProcess]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with private_cluster(tmp_path_factory.mktemp("races")) as cluster:
        fronts = [cluster.start("grpc-front", f"front{i}") for i in (1, 2)]
        cluster.start("worker", "worker")
        yield Deployment(cluster, fronts)


def _result_topic(cluster: Cluster, job_id: int) -> str:
    """The pub/sub topic a Listen on this job subscribes to (jobworkerp/storage/redis_bus.py)."""
    return f"{cluster.prefix}job_result_changed:job:{job_id}"


def _subscribers(cluster: Cluster, topic: str) -> int:
    client = cluster.redis_client()
    try:
        return int(client.pubsub_numsub(topic)[0][1])
    finally:
        client.close()


def _result_topics(cluster: Cluster) -> list[bytes | str]:
    """Every result topic some connection is still subscribed to."""
    client = cluster.redis_client()
    try:
        return sorted(client.pubsub_channels(f"{cluster.prefix}job_result_changed:*"), key=str)
    finally:
        client.close()


async def _no_result_topics_left(cluster: Cluster) -> list[bytes | str]:
    """Unsubscribing happens after the answer (off the caller's path): wait for it to land."""
    async def probe() -> list[bytes | str]:
        return _result_topics(cluster)

    return await eventually(probe, lambda topics: not topics)


async def _listen(c: Client, worker_id: data.WorkerId | None, job_id: data.JobId | None) -> data.JobResult:
    return await c.job_result.listen(svc.ListenRequest(job_id=job_id, worker_id=worker_id, timeout=LISTEN_TIMEOUT_MS))


# --- uniq_key -------------------------------------------------------------------------------


@dataclass
class EnqueueLedger:
    accepted: dict[int, str]  # job id -> tag of its run
    refused: Counter[str]  # gRPC status name -> how many


async def _enqueue_with_key(c: Client, worker_id: data.WorkerId | None, cluster: Cluster, tag: str,
                            gate: Path) -> tuple[str, int | None]:
    request = svc.JobRequest(worker_id=worker_id, args=ledger_args(cluster, tag, gate=gate), uniq_key=KEY)
    try:
        return tag, (await c.job.enqueue(request)).id.value
    except GRPCError as e:
        return f"{e.status.name}: {e.message}", None


async def _race_enqueues(fronts: list[Client], worker_id: data.WorkerId | None, cluster: Cluster,
                         gate: Path) -> EnqueueLedger:
    outcomes = await asyncio.gather(*(
        _enqueue_with_key(fronts[i % len(fronts)], worker_id, cluster, f"uniq-{i}", gate) for i in range(ENQUEUES)))
    return EnqueueLedger(accepted={job_id: tag for tag, job_id in outcomes if job_id is not None},
                         refused=Counter(answer.split(":")[0] for answer, job_id in outcomes if job_id is None))


def test_one_uniq_key_through_two_fronts_is_taken_once_and_free_again_after_the_job(deployment: Deployment) -> None:
    cluster = deployment.cluster
    gate = cluster.workdir / "uniq-gate"

    async def scenario() -> tuple[EnqueueLedger, list[data.JobResult], list[bytes | str]]:
        async with connect(deployment.fronts[0].port) as c1, connect(deployment.fronts[1].port) as c2:
            worker_id = (await c1.worker.create(ledger_worker(
                "uniq", response_type=data.ResponseType.LISTEN_AFTER))).id
            try:
                ledger = await _race_enqueues([c1, c2], worker_id, cluster, gate)
            finally:
                gate.touch()
            results = [await _listen(c2, worker_id, data.JobId(value=job_id)) for job_id in ledger.accepted]
            # The job has ended (its result is out): the key takes a new job at once, on either front.
            tag, again = await _enqueue_with_key(c2, worker_id, cluster, "uniq-again", gate)
            assert again is not None, f"the key was still taken after its job ended: {tag}"
            ledger.accepted[again] = tag
            results.append(await _listen(c1, worker_id, data.JobId(value=again)))
            return ledger, results, await _no_result_topics_left(cluster)

    try:
        ledger, results, topics_left = run(scenario(), timeout=240)
    finally:
        gate.touch()
    runs = cluster.runs()
    print(f"\nuniq_key race: sent {ENQUEUES} + 1, accepted {len(ledger.accepted)}, refused {dict(ledger.refused)}, "
          f"runs {dict(runs)}")
    assert len(ledger.accepted) == 2, ledger  # one of the 50, then the one after the job ended
    assert ledger.refused == Counter({Status.ALREADY_EXISTS.name: ENQUEUES - 1}), ledger.refused
    assert [r.data.status for r in results] == [data.ResultStatus.SUCCESS] * 2, results
    assert runs == Counter(ledger.accepted.values()), runs  # each accepted job ran once, nothing else
    assert not topics_left, topics_left


# --- Listen ---------------------------------------------------------------------------------


async def _wait_until_subscribed(cluster: Cluster, topic: str, connections: int) -> int:
    """Both fronts hold a subscription of the job's topic (one per process, shared by its listeners)."""
    async def probe() -> int:
        return _subscribers(cluster, topic)

    return await eventually(probe, lambda n: n >= connections)


def test_many_listens_through_two_fronts_all_get_the_result_and_leave_no_subscription(deployment: Deployment) -> None:
    cluster = deployment.cluster
    gate = cluster.workdir / "listen-gate"

    async def scenario() -> tuple[list[data.JobResult], int, list[bytes | str]]:
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(connect(front.port))
                       for front in deployment.fronts for _ in range(CONNECTIONS_PER_FRONT)]
            c = clients[0]
            worker_id = (await c.worker.create(ledger_worker(
                "listened", response_type=data.ResponseType.LISTEN_AFTER))).id
            job_id = (await c.job.enqueue(svc.JobRequest(
                worker_id=worker_id, args=ledger_args(cluster, "listened", gate=gate)))).id
            try:
                listens = [asyncio.ensure_future(_listen(clients[i % len(clients)], worker_id, job_id))
                           for i in range(LISTENERS)]
                departing = [asyncio.ensure_future(_listen(clients[i % len(clients)], worker_id, job_id))
                             for i in range(DEPARTING)]
                subscribed = await _wait_until_subscribed(cluster, _result_topic(cluster, job_id.value),
                                                          len(deployment.fronts))
                for task in departing:  # hang up: the server must drop their subscriptions too
                    task.cancel()
                await asyncio.gather(*departing, return_exceptions=True)
            finally:
                gate.touch()
            results = await asyncio.gather(*listens)
            return results, subscribed, await _no_result_topics_left(cluster)

    try:
        results, subscribed, topics_left = run(scenario(), timeout=240)
    finally:
        gate.touch()
    answers = Counter((r.id.value, r.data.status, tuple(r.data.output.items) if r.data.output else ()) for r in results)
    print(f"\nlisten race: {LISTENERS} listeners (+{DEPARTING} hung up), answered {len(results)}, "
          f"distinct answers {len(answers)}, runs {dict(cluster.runs())}, topics left {topics_left}")
    assert subscribed == len(deployment.fronts)
    assert len(results) == LISTENERS and len(answers) == 1, answers
    (_, status, output), = answers
    assert status == data.ResultStatus.SUCCESS and output == (b"listened\n",), answers
    assert cluster.runs()["listened"] == 1
    assert not topics_left, topics_left


# --- Listens ended by a Redis restart (runs last: it restarts the deployment's Redis) ---------


async def _listen_outcome(c: Client, worker_id: data.WorkerId | None, job_id: data.JobId | None) -> str:
    try:
        return (await _listen(c, worker_id, job_id)).data.status.name
    except GRPCError as e:
        return e.status.name


async def _all_resubscribed(cluster: Cluster, processes: int) -> int:
    """Every process's pub/sub connection is back: each subscribes again to everything it held
    in one command when it reconnects, so from here on a leftover topic would be visible."""
    async def probe() -> int:
        return _subscribers(cluster, f"{cluster.prefix}worker_changed")

    # A process that died never comes back: no need to wait for it.
    return await eventually(probe, lambda n: n >= processes or not all(p.alive() for p in cluster.procs))


def test_listens_ended_by_a_redis_restart_leave_no_subscription_and_no_process_dies(deployment: Deployment) -> None:
    """Listen callers waiting when Redis goes down get UNAVAILABLE and leave; dropping their
    subscriptions fails while Redis is down. That failure ended the grpc-front process; and an
    UNSUBSCRIBE that never reached Redis was subscribed again when the connection came back."""
    cluster = deployment.cluster
    gate = cluster.workdir / "outage-gate"

    async def scenario() -> tuple[Counter[str], int, list[bytes | str], str]:
        async with connect(deployment.fronts[0].port) as c1, connect(deployment.fronts[1].port) as c2:
            worker_id = (await c1.worker.create(ledger_worker(
                "outage", response_type=data.ResponseType.LISTEN_AFTER))).id
            job_id = (await c1.job.enqueue(svc.JobRequest(
                worker_id=worker_id, args=ledger_args(cluster, "outage", gate=gate)))).id
            try:
                listens = [asyncio.ensure_future(_listen_outcome((c1, c2)[i % 2], worker_id, job_id))
                           for i in range(OUTAGE_LISTENERS)]
                await _wait_until_subscribed(cluster, _result_topic(cluster, job_id.value), len(deployment.fronts))
                cluster.redis.stop()
                try:
                    answers = Counter(await asyncio.gather(*listens))
                finally:
                    cluster.redis.start()
                resubscribed = await _all_resubscribed(cluster, len(cluster.procs))
                topics_left = await _no_result_topics_left(cluster)
            finally:
                gate.touch()
            return answers, resubscribed, topics_left, await _listen_outcome(c2, worker_id, job_id)

    try:
        answers, resubscribed, topics_left, after = run(scenario(), timeout=240)
    finally:
        gate.touch()
    dead = {p.log_path.name: p.proc.returncode for p in cluster.procs if p.proc is not None and not p.alive()}
    print(f"\nlistens across a Redis restart: {OUTAGE_LISTENERS} listeners answered {dict(answers)}, "
          f"dead processes {dead}, topics left {topics_left}, listen afterwards {after}")
    assert not dead, dead
    assert answers == Counter({Status.UNAVAILABLE.name: OUTAGE_LISTENERS}), answers
    assert resubscribed == len(cluster.procs)
    assert not topics_left, topics_left
    assert after == data.ResultStatus.SUCCESS.name
