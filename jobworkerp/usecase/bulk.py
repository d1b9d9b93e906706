"""Bulk enqueue (BulkJobService.EnqueueBatch, beyond upstream): many jobs in one call, each with
its own answer.

Every item goes through the single Enqueue's own path (`Jobs._enqueue_to`: args, time and
priority checks, queue limit, uniq_key, placement), so a batch can never accept what Enqueue
would refuse, and each accepted job is placed exactly once. What a batch adds:

- each distinct worker is resolved once per batch, before any item is placed (the same answer
  for every item naming it, errors included);
- items are placed up to FAN_OUT at a time, as that many concurrent Enqueue calls would be: in
  Scalable mode their Redis commands then share round trips (storage/redis_pipeline.py), where
  one item after another paid two or three round trips each. As with concurrent Enqueue calls,
  the order in which jobs of one channel and priority are queued is therefore not the order of
  the items; the answers are;
- items with the same uniq_key are placed one after another in item order, so the first that
  gets the key holds it and the later ones get ALREADY_EXISTS, exactly as in sequential calls;
- DIRECT workers are refused per item: their Enqueue waits for the job's result, which a batch
  answering with job ids cannot do;
- once an item fails because storage cannot be reached (or the server began to stop), the items
  not yet started are not tried and get UNAVAILABLE saying so: each would otherwise wait out its
  own storage timeout, and the client can send exactly those again;
- a batch of more than JOB_ENQUEUE_BATCH_MAX_ITEMS items is refused whole, before any is placed,
  so that refusal never leaves part of a batch queued.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import trio

from jobworkerp.errors import InvalidArgument, ResourceExhausted, Unavailable, is_outage
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.service import JobRequest
from jobworkerp.storage.pubsub import EncodedResult
from jobworkerp.usecase.workers import Workers

EnqueueTo = Callable[[data.Worker, JobRequest], Awaitable[tuple[int, data.JobResult | EncodedResult | None]]]
FAN_OUT = 64  # items placed at once: enough to fill a Redis round trip, few enough to stay polite
YIELD_EVERY = 32  # items a placing task places before it lets other tasks run
_WorkerKey = tuple[str, object]


def _worker_key(req: JobRequest) -> _WorkerKey:
    return ("id", req.worker_id.value) if req.worker_id is not None else ("name", req.worker_name)


class Batch:
    """One batch's items, placed by `run`, and their outcomes in item order."""

    def __init__(self, workers: Workers, max_items: int, reqs: Sequence[JobRequest]) -> None:
        if len(reqs) > max_items:
            raise ResourceExhausted(f"items: {len(reqs)} items, more than JOB_ENQUEUE_BATCH_MAX_ITEMS={max_items}; "
                                    "split them into several calls (nothing was enqueued)")
        self._workers = workers
        self._reqs = reqs
        self._resolved: dict[_WorkerKey, data.Worker | Exception] = {}
        self._halted: str | None = None
        self.outcomes: list[int | Exception] = [Unavailable("not tried")] * len(reqs)

    async def run(self, refuse_if_stopping: Callable[[], None], enqueue_to: EnqueueTo) -> list[int | Exception]:
        """Place every item; per item its job id or error (raises only on cancellation).

        Up to FAN_OUT tasks take the items in order from one iterator and place them one after
        another, rather than a task per item behind a limiter: a task and two scheduling rounds
        per item were most of what a Standalone batch cost beyond the jobs' own placing, where
        placing seldom waits. An item with a uniq_key waits for the previous item with the
        same key, so those are placed in item order; the earliest unfinished item never
        waits, so every batch ends."""
        for req in self._reqs:
            await self._resolve(req)
        items = iter(enumerate(self._reqs))
        last_with_key: dict[str, trio.Event] = {}

        async def place_items() -> None:
            for placed, (index, req) in enumerate(items, start=1):
                key = req.uniq_key
                before = done = None
                if key is not None:
                    before = last_with_key.get(key)
                    done = last_with_key[key] = trio.Event()
                try:
                    if before is not None:
                        await before.wait()
                    self.outcomes[index] = await self._place_one(index, req, refuse_if_stopping, enqueue_to)
                finally:
                    if done is not None:
                        done.set()
                if placed % YIELD_EVERY == 0:  # a long batch that never waits lets the rest of the server run
                    await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            for _ in range(min(FAN_OUT, len(self._reqs))):
                nursery.start_soon(place_items)
        return self.outcomes

    async def _place_one(self, index: int, req: JobRequest, refuse_if_stopping: Callable[[], None],
                         enqueue_to: EnqueueTo) -> int | Exception:
        if self._halted is not None:
            return Unavailable(f"not tried: {self._halted}; enqueue this item again")
        try:
            refuse_if_stopping()
            worker = self._resolved[_worker_key(req)]
            if isinstance(worker, Exception):
                raise worker
            if worker.data is not None and worker.data.response_type == data.ResponseType.DIRECT:
                field = "worker_id" if req.worker_id is not None else "worker_name"
                raise InvalidArgument(field, f"worker {worker.data.name!r} is DIRECT, whose jobs answer with "
                                             "their result: a batch cannot wait for it; use JobService.Enqueue")
            job_id, _ = await enqueue_to(worker, req)
            return job_id
        except Exception as e:
            if is_outage(e) and self._halted is None:
                self._halted = f"item {index} failed with {type(e).__name__}: {e}"
            return e

    async def _resolve(self, req: JobRequest) -> None:
        key = _worker_key(req)
        if key not in self._resolved:
            try:
                self._resolved[key] = await self._workers.resolve(req.worker_id, req.worker_name)
            except Exception as e:  # refused (unknown, missing) or storage down: the answer for each item naming it
                self._resolved[key] = e
