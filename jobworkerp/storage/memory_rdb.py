"""In-memory driver of :class:`jobworkerp.storage.rdb.Repository`.

For tests that run the worker side in trio's virtual time (MockClock): it never leaves the
event loop (no thread hops, during which an autojumping clock would race ahead), and it holds to
the same conformance suite as the SQL drivers. Not for production: nothing survives a restart.
Rows are stored as encoded bytes, so callers can never mutate stored state by accident.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar, cast

import trio

from jobworkerp.errors import AlreadyExists, InvalidArgument, StorageClosed
from jobworkerp.proto.jobworkerp import data
from jobworkerp.storage.rdb import DEFAULT_CHANNEL
from jobworkerp.wire import encode
from jobworkerp.wire_decode import decode

T = TypeVar("T")

_NO_RETRY = data.RetryPolicy(type=data.RetryType.NONE, interval=0, max_interval=0, max_retry=0, basis=2.0)
_SEED = ((1, "COMMAND", data.RunnerType.COMMAND), (2, "HTTP_REQUEST", data.RunnerType.HTTP_REQUEST),
         (3, "GRPC_UNARY", data.RunnerType.GRPC_UNARY), (4, "DOCKER", data.RunnerType.DOCKER))


def _page(items: list[T], limit: int | None, offset: int | None) -> list[T]:
    start = offset or 0
    return items[start:] if limit is None or limit < 0 else items[start : start + limit]


def _normal_worker(worker: data.WorkerData) -> bytes:
    copy = decode(data.WorkerData, encode(worker))
    if copy.retry_policy is None:
        copy.retry_policy = _NO_RETRY
    if copy.channel == DEFAULT_CHANNEL:
        copy.channel = None
    return encode(copy)


def _normal_job(job: data.Job) -> bytes:
    if job.id is None:
        raise InvalidArgument("id", "a job needs an id")
    copy = decode(data.Job, encode(job))
    copy.data.grabbed_until_time = copy.data.grabbed_until_time or 0
    return encode(copy)


def _normal_result(result: data.JobResult) -> bytes:
    if result.id is None:
        raise InvalidArgument("id", "a job result needs an id")
    copy = decode(data.JobResult, encode(result))
    rd = copy.data
    rd.worker_name, rd.max_retry, rd.store_success, rd.store_failure = "", 0, False, False
    rd.response_type = data.ResponseType.NO_RESULT
    if rd.output is None:
        rd.output = data.ResultOutput()
    return encode(copy)


class MemoryRepository:
    def __init__(self) -> None:
        self._open = False
        self._runners: dict[int, tuple[bytes, str]] = {}  # id -> (Runner, file_name)
        self._workers: dict[int, bytes] = {}
        self._next_worker_id = 1
        self._jobs: dict[int, bytes] = {}
        self._job_extras: dict[int, bytes] = {}
        self._results: dict[int, bytes] = {}

    async def _op(self, fn: Callable[[], T]) -> T:
        await trio.lowlevel.checkpoint()
        if not self._open:
            raise StorageClosed("repository is closed")
        return fn()

    async def open(self) -> None:
        self._open = True
        for runner_id, name, kind in _SEED:
            if runner_id not in self._runners:
                runner = data.Runner(id=data.RunnerId(value=runner_id),
                                     data=data.RunnerData(name=name, runner_type=kind))
                self._runners[runner_id] = (bytes(runner), f"builtin{runner_id}")

    async def aclose(self) -> None:
        self._open = False

    # --- runners ---------------------------------------------------------------------
    def _runner_rows(self) -> list[data.Runner]:
        return [decode(data.Runner, raw) for raw, _ in sorted(self._runners.values(), key=lambda r: -self._rid(r[0]))]

    @staticmethod
    def _rid(raw: bytes) -> int:
        return decode(data.Runner, raw).id.value

    async def upsert_runner(self, runner: data.Runner, file_name: str) -> None:
        def upsert() -> None:
            for other_id, (raw, other_file) in self._runners.items():
                other = decode(data.Runner, raw)
                if other_id != runner.id.value and (other.data.name == runner.data.name or other_file == file_name):
                    raise AlreadyExists(f"runner name {runner.data.name!r} or file_name {file_name!r} already exists")
            row = data.Runner(id=runner.id, data=data.RunnerData(name=runner.data.name,
                                                                 runner_type=runner.data.runner_type))
            self._runners[runner.id.value] = (encode(row), file_name)

        await self._op(upsert)

    async def find_runner(self, runner_id: int) -> data.Runner | None:
        return await self._op(lambda: decode(data.Runner, self._runners[runner_id][0])
                              if runner_id in self._runners else None)

    async def list_runners(self, limit: int | None = None, offset: int | None = None) -> list[data.Runner]:
        return await self._op(lambda: _page(self._runner_rows(), limit, offset))

    async def count_runners(self) -> int:
        return await self._op(lambda: len(self._runners))

    async def delete_runner(self, runner_id: int) -> bool:
        return await self._op(lambda: self._runners.pop(runner_id, None) is not None)

    # --- workers -----------------------------------------------------------------------
    def _check_name(self, name: str, worker_id: int | None) -> None:
        for other_id, raw in self._workers.items():
            if other_id != worker_id and decode(data.WorkerData, raw).name == name:
                raise AlreadyExists(f"worker name {name!r} already exists")

    async def create_worker(self, worker: data.WorkerData) -> int:
        def create() -> int:
            self._check_name(worker.name, None)
            worker_id = self._next_worker_id
            self._next_worker_id += 1
            self._workers[worker_id] = _normal_worker(worker)
            return worker_id

        return await self._op(create)

    async def update_worker(self, worker_id: int, worker: data.WorkerData) -> bool:
        def update() -> bool:
            if worker_id not in self._workers:
                return False
            self._check_name(worker.name, worker_id)
            self._workers[worker_id] = _normal_worker(worker)
            return True

        return await self._op(update)

    async def delete_worker(self, worker_id: int) -> bool:
        return await self._op(lambda: self._workers.pop(worker_id, None) is not None)

    def _worker(self, worker_id: int) -> data.Worker:
        return data.Worker(id=data.WorkerId(value=worker_id), data=decode(data.WorkerData, self._workers[worker_id]))

    async def find_worker(self, worker_id: int) -> data.Worker | None:
        return await self._op(lambda: self._worker(worker_id) if worker_id in self._workers else None)

    async def find_worker_by_name(self, name: str) -> data.Worker | None:
        def find() -> data.Worker | None:
            for worker_id, raw in self._workers.items():
                if decode(data.WorkerData, raw).name == name:
                    return self._worker(worker_id)
            return None

        return await self._op(find)

    async def list_workers(self, limit: int | None = None, offset: int | None = None) -> list[data.Worker]:
        return await self._op(lambda: _page([self._worker(i) for i in sorted(self._workers, reverse=True)],
                                            limit, offset))

    async def count_workers(self) -> int:
        return await self._op(lambda: len(self._workers))

    # --- jobs --------------------------------------------------------------------------
    def _all_jobs(self) -> Iterable[data.Job]:
        return (decode(data.Job, raw) for raw in self._jobs.values())

    def _check_uniq(self, job: data.Job) -> None:
        key = job.data.uniq_key
        if key is None:
            return
        for other in self._all_jobs():
            if other.id.value != job.id.value and other.data.uniq_key == key:
                raise AlreadyExists(f"job uniq_key {key!r} already exists")

    def _keep_extras(self, job_id: int, extras: bytes) -> None:
        if extras:
            self._job_extras[job_id] = bytes(extras)
        else:
            self._job_extras.pop(job_id, None)

    async def create_job(self, job: data.Job, extras: bytes = b"") -> None:
        def create() -> None:
            raw = _normal_job(job)
            if job.id.value in self._jobs:
                raise AlreadyExists(f"job id {job.id.value} already exists")
            self._check_uniq(job)
            self._jobs[job.id.value] = raw
            self._keep_extras(job.id.value, extras)

        await self._op(create)

    async def upsert_job(self, job: data.Job, extras: bytes = b"") -> None:
        def upsert() -> None:
            raw = _normal_job(job)
            self._check_uniq(job)
            self._jobs[job.id.value] = raw
            self._keep_extras(job.id.value, extras)

        await self._op(upsert)

    async def find_job_extras(self, job_ids: Sequence[int]) -> dict[int, bytes]:
        return await self._op(lambda: {i: self._job_extras[i] for i in set(job_ids)
                                       if i in self._jobs and i in self._job_extras})

    async def find_job(self, job_id: int) -> data.Job | None:
        return await self._op(lambda: decode(data.Job, self._jobs[job_id]) if job_id in self._jobs else None)

    async def list_jobs(self, limit: int | None = None, offset: int | None = None, *,
                        before_id: int | None = None) -> list[data.Job]:
        return await self._op(lambda: _page([decode(data.Job, self._jobs[i]) for i in sorted(self._jobs, reverse=True)
                                             if before_id is None or i < before_id], limit, offset))

    async def count_jobs(self) -> int:
        return await self._op(lambda: len(self._jobs))

    async def delete_job(self, job_id: int, *, grabbed_until: int | None = None) -> bool:
        def delete() -> bool:
            raw = self._jobs.get(job_id)
            if raw is None:
                return False
            if grabbed_until is not None and (decode(data.Job, raw).data.grabbed_until_time or 0) != grabbed_until:
                return False
            del self._jobs[job_id]
            self._job_extras.pop(job_id, None)
            return True

        return await self._op(delete)

    async def find_due_jobs(self, worker_ids: Sequence[int], run_before: int, now: int, limit: int) -> list[data.Job]:
        wanted = set(worker_ids)

        def due() -> list[data.Job]:
            jobs = [j for j in self._all_jobs()
                    if j.data.worker_id is not None and j.data.worker_id.value in wanted
                    and 0 < j.data.run_after_time <= run_before and (j.data.grabbed_until_time or 0) <= now]
            jobs.sort(key=lambda j: (j.data.run_after_time, -int(j.data.priority), j.id.value))
            return jobs[:limit]

        return await self._op(due)

    async def claim_job(self, job_id: int, expected_grabbed_until: int, grabbed_until: int, *,
                        run_after_time: int | None = None) -> bool:
        def claim() -> bool:
            raw = self._jobs.get(job_id)
            if raw is None:
                return False
            job = decode(data.Job, raw)
            if (job.data.grabbed_until_time or 0) != expected_grabbed_until:
                return False
            if run_after_time is not None and job.data.run_after_time != run_after_time:
                return False
            job.data.grabbed_until_time = grabbed_until
            self._jobs[job_id] = encode(job)
            return True

        return await self._op(claim)

    # --- results -----------------------------------------------------------------------
    async def add_results(self, results: Sequence[data.JobResult]) -> None:
        def add() -> None:
            rows = {r.id.value if r.id else None: _normal_result(r) for r in results}
            for result in results:
                # Ignored for mypy: `x.id` is Optional in the generated types, which defeats `sum`'s overloads.
                if result.id.value in self._results or sum(1 for x in results if x.id.value == result.id.value) > 1:  # type: ignore[misc]
                    raise AlreadyExists(f"job result id {result.id.value} already exists")
            # No None key: _normal_result refused every result without an id.
            self._results.update(cast(dict[int, bytes], rows))  # all or nothing

        await self._op(add)

    def _all_results(self) -> list[data.JobResult]:
        return [decode(data.JobResult, raw) for raw in self._results.values()]

    async def find_result(self, result_id: int) -> data.JobResult | None:
        return await self._op(lambda: decode(data.JobResult, self._results[result_id])
                              if result_id in self._results else None)

    async def list_results(self, limit: int | None = None, offset: int | None = None) -> list[data.JobResult]:
        def listed() -> list[data.JobResult]:
            rows = sorted(self._all_results(), key=lambda r: (r.data.job_id.value, r.id.value), reverse=True)
            return _page(rows, limit, offset)

        return await self._op(listed)

    def _of_job(self, job_id: int) -> list[data.JobResult]:
        rows = [r for r in self._all_results() if r.data.job_id is not None and r.data.job_id.value == job_id]
        return sorted(rows, key=lambda r: (r.data.end_time, r.id.value), reverse=True)

    async def list_results_by_job_id(self, job_id: int, limit: int = 1000) -> list[data.JobResult]:
        return await self._op(lambda: self._of_job(job_id)[:limit])

    async def latest_result_of_job(self, job_id: int) -> data.JobResult | None:
        return await self._op(lambda: next(iter(self._of_job(job_id)), None))

    async def count_results(self) -> int:
        return await self._op(lambda: len(self._results))

    async def delete_result(self, result_id: int) -> bool:
        return await self._op(lambda: self._results.pop(result_id, None) is not None)
