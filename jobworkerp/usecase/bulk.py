"""Bulk enqueue (BulkJobService.EnqueueBatch, beyond upstream): many jobs in one call, each with
its own answer.

Every item goes through the single Enqueue's own path (`Jobs._enqueue_to`: args, time and
priority checks, queue limit, uniq_key, placement), so a batch can never accept what Enqueue
would refuse. What a batch adds:

- items are accepted one after another in request order, so their outcomes are the ones the same
  Enqueue calls made in that order would get: a second item with the first one's uniq_key gets
  ALREADY_EXISTS, and jobs of one channel and priority are queued in item order;
- each worker is resolved once per batch (the same answer for every item naming it, errors
  included), instead of once per item;
- DIRECT workers are refused per item: their Enqueue waits for the job's result, which a batch
  answering with job ids cannot do;
- once an item fails because storage cannot be reached (or the server began to stop), the
  items after it are not tried and get UNAVAILABLE saying so: each would otherwise wait out its
  own storage timeout, and the client can send exactly those again;
- a batch of more than JOB_ENQUEUE_BATCH_MAX_ITEMS items is refused whole, before any is
  accepted, so a refusal never leaves half a batch queued.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from jobworkerp.errors import InvalidArgument, ResourceExhausted, Unavailable, is_outage
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.service import JobRequest
from jobworkerp.usecase.workers import Workers

EnqueueTo = Callable[[data.Worker, JobRequest], Awaitable[tuple[int, data.JobResult | None]]]


class Batch:
    """The outcomes of one batch, filled in item by item (`run`)."""

    def __init__(self, workers: Workers, max_items: int, count: int) -> None:
        if count > max_items:
            raise ResourceExhausted(f"items: {count} items, more than JOB_ENQUEUE_BATCH_MAX_ITEMS={max_items}; "
                                    "split them into several calls (nothing was enqueued)")
        self._workers = workers
        self._resolved: dict[tuple[str, object], data.Worker | Exception] = {}
        self._halted: str | None = None
        self.outcomes: list[int | Exception] = []

    async def run(self, req: JobRequest, refuse_if_stopping: Callable[[], None], enqueue_to: EnqueueTo) -> None:
        """Enqueue one item and record its job id or error (never raises but for cancellation)."""
        if self._halted is not None:
            self.outcomes.append(Unavailable(f"not tried: {self._halted}; enqueue this item again"))
            return
        try:
            refuse_if_stopping()
            worker = await self._resolve(req)
            if worker.data is not None and worker.data.response_type == data.ResponseType.DIRECT:
                field = "worker_id" if req.worker_id is not None else "worker_name"
                raise InvalidArgument(field, f"worker {worker.data.name!r} is DIRECT, whose jobs answer with "
                                             "their result: a batch cannot wait for it; use JobService.Enqueue")
            job_id, _ = await enqueue_to(worker, req)
        except Exception as e:
            self.outcomes.append(e)
            if is_outage(e):
                self._halted = f"item {len(self.outcomes) - 1} failed with {type(e).__name__}: {e}"
            return
        self.outcomes.append(job_id)

    async def _resolve(self, req: JobRequest) -> data.Worker:
        key: tuple[str, object] = (("id", req.worker_id.value) if req.worker_id is not None
                                   else ("name", req.worker_name))
        found = self._resolved.get(key)
        if found is None:
            try:
                found = await self._workers.resolve(req.worker_id, req.worker_name)
            except InvalidArgument as e:  # the request's fault: the same answer for every item naming it
                found = e
            self._resolved[key] = found
        if isinstance(found, Exception):
            raise found
        return found
