"""How a batch places its items (usecase/bulk.py), with an `enqueue_to` that waits at random
points as a storage round trip would: every item is answered in its own slot; items sharing a
uniq_key are placed in item order whatever the interleaving; once one item meets a storage
outage, the items not yet started are answered UNAVAILABLE "not tried" instead of each waiting
out the outage."""

from __future__ import annotations

import random

import pytest
import trio

from jobworkerp.errors import AlreadyExists, Unavailable
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.service import JobRequest
from jobworkerp.usecase.bulk import FAN_OUT, Batch

pytestmark = pytest.mark.timeout(20)

WORKER = data.Worker(id=data.WorkerId(value=1), data=data.WorkerData(
    name="w", response_type=data.ResponseType.NO_RESULT))


class OneWorker:
    """The use-case lookup a batch resolves its workers through, knowing one worker."""

    async def resolve(self, worker_id: data.WorkerId | None, worker_name: str | None) -> data.Worker:
        return WORKER


def item(number: int, key: str | None = None) -> JobRequest:
    return JobRequest(worker_id=data.WorkerId(value=1), args=str(number).encode(), uniq_key=key)


@pytest.mark.parametrize("seed", range(8))
async def test_items_sharing_a_key_are_placed_in_item_order_whatever_the_interleaving(seed: int) -> None:
    rng = random.Random(seed)
    holders: dict[str, int] = {}
    placed: list[int] = []

    async def enqueue_to(worker: data.Worker, req: JobRequest) -> tuple[int, None]:
        number = int(req.args)
        for _ in range(rng.randrange(3)):  # a round trip or two, of varying length
            await trio.sleep(rng.random() / 1000)
        if req.uniq_key is not None:
            if req.uniq_key in holders:
                raise AlreadyExists(f"uniq_key {req.uniq_key!r} is taken by job {holders[req.uniq_key]}")
            holders[req.uniq_key] = number
        placed.append(number)
        return number, None

    reqs = [item(i, key=rng.choice([None, "a", "b"])) for i in range(3 * FAN_OUT)]
    outcomes = await Batch(OneWorker(), 1000, reqs).run(lambda: None, enqueue_to)  # type: ignore[arg-type]

    first_with = {key: next(i for i, r in enumerate(reqs) if r.uniq_key == key) for key in ("a", "b")
                  if any(r.uniq_key == key for r in reqs)}
    for i, (req, outcome) in enumerate(zip(reqs, outcomes, strict=True)):
        if req.uniq_key is None or first_with[req.uniq_key] == i:
            assert outcome == i  # each answer in its own slot
        else:
            assert isinstance(outcome, AlreadyExists) and f"job {first_with[req.uniq_key]}" in str(outcome)
    assert sorted(placed) == [i for i, r in enumerate(reqs) if r.uniq_key is None or first_with[r.uniq_key] == i]


async def test_after_a_storage_outage_the_items_not_yet_started_are_not_tried() -> None:
    started: list[int] = []

    async def enqueue_to(worker: data.Worker, req: JobRequest) -> tuple[int, None]:
        number = int(req.args)
        started.append(number)
        await trio.sleep(0.001)
        if number == 5:
            raise Unavailable("storage unreachable")
        return number, None

    reqs = [item(i) for i in range(4 * FAN_OUT)]
    outcomes = await Batch(OneWorker(), 1000, reqs).run(lambda: None, enqueue_to)  # type: ignore[arg-type]

    assert isinstance(outcomes[5], Unavailable)
    not_tried = [i for i, o in enumerate(outcomes) if isinstance(o, Unavailable) and "not tried" in str(o)]
    assert not_tried and all(i not in started for i in not_tried)
    assert "item 5 failed with Unavailable" in str(outcomes[not_tried[0]])
    assert all(outcomes[i] == i for i in started if i != 5)  # those begun before it ended still answer
