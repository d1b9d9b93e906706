"""JOB_QUEUE_MAX_LENGTH under concurrent enqueues (usecase/queue_limit.py), on a real Redis queue:
the enqueues that find the channel's count stale share one read of its length, and the limit
holds across them."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from jobworkerp.errors import ResourceExhausted
from jobworkerp.storage.redis_queue import RedisJobQueue
from jobworkerp.usecase.queue_limit import QueueLimit
from tests.redis_queue.conftest import RedisEnv, job

pytestmark = pytest.mark.timeout(30)

LIMIT = 5
QUEUED = 3
CALLERS = 20


class HeldReads(RedisJobQueue):
    """The real queue; its length reads are counted, and each waits for `reads_may_end` so that every
    caller arrives while the first read is under way."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.reads = 0
        self.reads_may_end = trio.Event()

    async def length(self, channel: str) -> int:
        self.reads += 1
        await self.reads_may_end.wait()
        return await super().length(channel)


async def test_concurrent_enqueues_share_one_length_read_and_the_limit_holds(env: RedisEnv) -> None:
    queue = HeldReads(env.client, prefix=env.prefix, instance_id="limit")
    env.queues.append(queue)
    for job_id in range(QUEUED):
        await queue.push("c", job(job_id + 1))
    limit = QueueLimit(queue, LIMIT)
    admitted: list[int] = []
    refused: list[int] = []

    async def enqueue(caller: int) -> None:
        try:
            await limit.admit("c")
        except ResourceExhausted:
            refused.append(caller)
        else:
            admitted.append(caller)

    async with trio.open_nursery() as nursery:
        for caller in range(CALLERS):
            nursery.start_soon(enqueue, caller)
        await trio.testing.wait_all_tasks_blocked()  # every caller waits on the one read
        assert queue.reads == 1
        queue.reads_may_end.set()
    assert queue.reads == 1
    # 3 queued + 2 admitted reach the limit of 5; without the shared read each caller read 3.
    assert len(admitted) == LIMIT - QUEUED and len(refused) == CALLERS - (LIMIT - QUEUED)
