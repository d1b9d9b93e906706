"""Runners and workers as the client needs them: looked up, cached where that is safe, decoded.

Encoding a job's args needs worker -> runner -> args proto. Runners are cached by id and name for
the client's life: a runner's protos change only when the server restarts with a changed plugin
(or function), and a job refused with INVALID_ARGUMENT drops its runner from the cache
(`forget_runner`), so the next call sees the new protos. Workers are not cached: another client
may update or delete one at any time, and a stale response type would make `run` wait the wrong
way; a worker look-up is one small read.
"""

from __future__ import annotations

from jobworkerp.client import payloads
from jobworkerp.client.errors import RunnerNotFound, WorkerNotFound
from jobworkerp.client.models import JobResult, RetryPolicy, Runner, Worker
from jobworkerp.client.rpc import Rpc
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc

PAGE = 1000  # the server's largest FindList page
WorkerRef = str | int | Worker  # a worker's name, id, or the Worker itself


def runner_of(r: data.Runner) -> Runner:
    d = r.data
    return Runner(r.id.value, d.name, d.runner_type.name, d.runner_settings_proto, d.job_args_proto,
                  d.result_output_proto)


class Catalog:
    def __init__(self, rpc: Rpc) -> None:
        self._rpc = rpc
        self._runners: dict[int, Runner] = {}
        self._runner_ids: dict[str, int] = {}

    # ---------------------------------------------------------------- runners

    async def runners(self) -> list[Runner]:
        """Every runner the server offers (built-ins, plugins, functions), refreshing the cache."""
        found: list[Runner] = []
        while True:
            request = svc.FindListRequest(limit=PAGE, offset=len(found))

            async def read_page(t: float | None, r: svc.FindListRequest = request) -> list[data.Runner]:
                return [item async for item in self._rpc.services.runner.find_list(r, timeout=t)]

            page = await self._rpc.call(read_page, idempotent=True)
            found += [runner_of(r) for r in page]
            if len(page) < PAGE:
                break
        self._runners = {r.id: r for r in found}
        self._runner_ids = {r.name: r.id for r in found}
        return found

    async def runner(self, ref: str | int) -> Runner:
        """A runner by name or id (cached); RunnerNotFound when the server has none."""
        runner_id = self._runner_ids.get(ref) if isinstance(ref, str) else ref
        if runner_id is not None and runner_id in self._runners:
            return self._runners[runner_id]
        if isinstance(ref, str):
            await self.runners()
            if ref not in self._runner_ids:
                raise RunnerNotFound(f"no runner named {ref!r} (known: {', '.join(sorted(self._runner_ids))})")
            return self._runners[self._runner_ids[ref]]
        found = (await self._rpc.call(lambda t: self._rpc.services.runner.find(data.RunnerId(value=ref), timeout=t),
                                      idempotent=True)).data
        if found is None:
            raise RunnerNotFound(f"no runner with id {ref}")
        runner = runner_of(found)
        self._runners[runner.id] = runner
        self._runner_ids[runner.name] = runner.id
        return runner

    def forget_runner(self, runner_id: int) -> None:
        runner = self._runners.pop(runner_id, None)
        if runner is not None:
            self._runner_ids.pop(runner.name, None)

    # ---------------------------------------------------------------- workers

    async def find_worker(self, ref: str | int) -> Worker | None:
        """A worker by name or id, None when there is none."""
        if isinstance(ref, str):
            request = svc.WorkerNameRequest(name=ref)
            found = (await self._rpc.call(lambda t: self._rpc.services.worker.find_by_name(request, timeout=t),
                                          idempotent=True)).data
        else:
            found = (await self._rpc.call(lambda t: self._rpc.services.worker.find(data.WorkerId(value=ref), timeout=t),
                                          idempotent=True)).data
        return None if found is None else await self.worker_of(found)

    async def worker(self, ref: WorkerRef) -> Worker:
        """The current definition of a worker; WorkerNotFound when it does not exist."""
        if isinstance(ref, Worker):
            ref = ref.id
        found = await self.find_worker(ref)
        if found is None:
            raise WorkerNotFound(f"worker {ref!r} does not exist" if isinstance(ref, str)
                                 else f"worker {ref} does not exist")
        return found

    async def worker_of(self, w: data.Worker) -> Worker:
        d = w.data
        runner = await self.runner(d.runner_id.value)
        p = d.retry_policy
        retry = None if p is None else RetryPolicy(p.type.name, p.interval, p.max_interval, p.max_retry, p.basis)
        return Worker(
            id=w.id.value, name=d.name, runner=runner,
            settings=payloads.decode(runner.settings_proto, d.runner_settings),
            response_type=d.response_type.name, queue_type=d.queue_type.name, channel=d.channel,
            periodic_interval_ms=d.periodic_interval, store_success=d.store_success, store_failure=d.store_failure,
            use_static=d.use_static, next_workers=tuple(n.value for n in d.next_workers), retry=retry, raw=w,
        )


def result_of(r: data.JobResult, runner: Runner) -> JobResult:
    """A JobResult decoded through `runner`'s result proto."""
    d = r.data
    success = d.status == data.ResultStatus.SUCCESS
    items = list(d.output.items) if d.output is not None else []
    return JobResult(
        id=r.id.value if r.id is not None else 0, job_id=d.job_id.value if d.job_id is not None else 0,
        worker=d.worker_name, status=d.status.name, output=payloads.decode_output(runner.result_proto, items, success),
        retried=d.retried, start_time=d.start_time, end_time=d.end_time, raw=r,
    )

