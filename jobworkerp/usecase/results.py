"""JobResultService operations: stored results, Listen (long-poll) and per-worker streams.

Stored rows do not keep the worker-derived fields (worker_name, max_retry, response_type,
store flags); reads fill them from the current worker, and keep the row as stored when the
worker has since been deleted (upstream dropped such rows from lists).
"""

from __future__ import annotations

import builtins
import math
from collections.abc import AsyncIterator

import trio

from jobworkerp.errors import DeadlineExceeded, InvalidArgument
from jobworkerp.lifecycle.results import fill_worker_fields
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.service import ListenRequest, ListenStreamByWorkerRequest
from jobworkerp.storage import Storage
from jobworkerp.usecase.paging import page
from jobworkerp.usecase.workers import Workers

DEFAULT_LISTEN_TIMEOUT_MS = 86_400_000  # one day


class Results:
    def __init__(self, storage: Storage, workers: Workers) -> None:
        self._storage = storage
        self._workers = workers

    async def _filled(self, result: data.JobResult) -> data.JobResult:
        return fill_worker_fields(result, await self._workers.get(result.data.worker_id.value))

    async def _filled_all(self, results: list[data.JobResult]) -> list[data.JobResult]:
        return [await self._filled(r) for r in results]

    async def find(self, result_id: int) -> data.JobResult | None:
        result = await self._storage.repo.find_result(result_id)
        return None if result is None else await self._filled(result)

    async def list(self, limit: int | None, offset: int | None) -> list[data.JobResult]:
        return await self._filled_all(await self._storage.repo.list_results(*page(limit, offset)))

    async def list_by_job_id(self, job_id: int) -> builtins.list[data.JobResult]:  # (`list` is a method here)
        return await self._filled_all(await self._storage.repo.list_results_by_job_id(job_id))

    async def count(self) -> int:
        return await self._storage.repo.count_results()

    async def delete(self, result_id: int) -> bool:
        return await self._storage.repo.delete_result(result_id)

    async def listen(self, req: ListenRequest) -> data.JobResult:
        """Wait for the final result of a job (subscribe first, then look at storage)."""
        if req.job_id is None or req.job_id.value == 0:
            raise InvalidArgument("job_id", "is required")
        worker = await self._workers.resolve(req.worker_id, req.worker_name)
        if worker.data.response_type == data.ResponseType.DIRECT:
            raise InvalidArgument("worker", "results of DIRECT workers are returned by Enqueue, not Listen")
        job_id = req.job_id.value
        timeout_ms = DEFAULT_LISTEN_TIMEOUT_MS if req.timeout is None else req.timeout
        wait_s = math.inf if timeout_ms == 0 else timeout_ms / 1000
        async with self._storage.bus.listen_job(job_id) as waiter:
            stored = await self._storage.repo.latest_result_of_job(job_id)
            # A final result is stored a moment before the job is settled (status, uniq_key);
            # until then the announcement is on its way, so wait for it: a caller that has the
            # result must not still find the job's uniq_key taken. A periodic job lives on after
            # each run's result, so its latest stored result answers at once.
            if stored is not None and stored.data.status != data.ResultStatus.ERROR_AND_RETRY and (
                    worker.data.periodic_interval or await self._storage.status.get(job_id) is None):
                return fill_worker_fields(stored, worker)
            with trio.move_on_after(wait_s):
                return await waiter.wait()
        raise DeadlineExceeded(f"job_id: no result for job {job_id} within {timeout_ms} ms")

    async def stream_by_worker(self, req: ListenStreamByWorkerRequest) -> AsyncIterator[builtins.list[data.JobResult]]:
        """Every final result of one worker from now on, until the caller goes away; in order,
        as many at a time as have come (`WorkerResultStream.receive_batch`)."""
        worker = await self._workers.resolve(req.worker_id, req.worker_name)
        if worker.data.response_type == data.ResponseType.DIRECT:
            raise InvalidArgument("worker", "results of DIRECT workers are returned by Enqueue only")
        async with self._storage.bus.listen_worker(worker.id.value) as stream:
            while True:
                try:
                    batch = await stream.receive_batch()
                except trio.EndOfChannel:
                    return
                yield batch
