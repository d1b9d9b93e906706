"""Two worker processes (two queue instances, two clients) share one channel: no job twice, none lost."""

from __future__ import annotations

import pytest
import trio

from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.redis_queue import RedisJobQueue
from tests.redis_queue.conftest import RedisEnv, job

pytestmark = pytest.mark.timeout(60)

JOBS = 200
POPPERS_PER_INSTANCE = 4


async def test_two_instances_popping_concurrently_get_every_job_exactly_once(env: RedisEnv) -> None:
    queues = [env.queue(name, client=env.new_client()) for name in ("a", "b")]
    taken: dict[str, list[int]] = {"a": [], "b": []}
    all_acked = trio.Event()

    async def producer() -> None:  # pushes while the poppers already run, from a third client
        q = env.queue("producer", client=env.new_client())
        priorities = (data.Priority.LOW, data.Priority.MEDIUM, data.Priority.HIGH)
        for i in range(JOBS):
            await q.push("c", job(i, priorities[i % 3]))

    acked = 0

    async def popper(q: RedisJobQueue) -> None:
        nonlocal acked
        while True:
            j = await q.pop("c")
            taken[q.instance_id].append(j.job_id)
            await q.ack(j.job_id)
            acked += 1
            # Counting acks, not pops: when the last job is taken another popper may still be
            # inside ack(), and cancelling the nursery then could drop that ack before it is sent.
            if acked == JOBS:
                all_acked.set()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for q in queues:
                for _ in range(POPPERS_PER_INSTANCE):
                    nursery.start_soon(popper, q)
            nursery.start_soon(producer)
            await all_acked.wait()
            nursery.cancel_scope.cancel()
    everything = taken["a"] + taken["b"]
    assert sorted(everything) == list(range(JOBS))  # every job exactly once
    assert await queues[0].length("c") == 0
    for q in queues:
        # queued_ids reads through q's pipeliner, after any ack still queued there (none is
        # here: no flusher runs, so ack awaited its reply), so nothing of q is in flight.
        assert await q.queued_ids(["c"]) == set()
        assert not await env.call(env.client.exists, q.keys.inflight(q.instance_id))
