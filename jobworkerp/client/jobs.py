"""`JobHandle`: an enqueued job, and how to get its result, its status, or rid of it.

How the result is obtained depends on the worker's response type, decided when it was enqueued:
DIRECT jobs answer in the Enqueue reply (the handle already holds the result); LISTEN_AFTER jobs
are waited for with JobResultService.Listen, which also finds a result stored before the wait
began (these workers store every result), so it cannot be missed; NO_RESULT jobs have no result
to wait for, only the worker's stream (`Client.results`): `result()` says so (`NoResult`)
instead of waiting on something that may never come.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobworkerp.client.catalog import result_of
from jobworkerp.client.errors import NoResult
from jobworkerp.client.models import JobResult, Worker
from jobworkerp.client.rpc import Rpc
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc

# Beyond the wait asked for, how long the call may take to answer that the wait is over.
LISTEN_MARGIN_S = 10.0


@dataclass
class JobHandle:
    job_id: int
    worker: Worker
    _rpc: Rpc = field(repr=False)
    _result: JobResult | None = field(default=None, repr=False)

    # The wait is the server's (Listen's timeout), not a local cancel scope: hence a parameter.
    async def result(self, timeout: float | None = None) -> JobResult:  # noqa: ASYNC109
        """The job's final result, waiting up to `timeout` seconds (None: as long as it takes).

        A job that failed is a result too (`status`, `output`; `raise_for_status()` raises
        JobFailed); the errors raised here are about getting it: DeadlineExceeded, NoResult,
        Unavailable once the retries are used up."""
        if self._result is not None:
            return self._result
        if self.worker.response_type == "NO_RESULT":
            raise NoResult(f"worker {self.worker.name!r} is NO_RESULT: its results are only streamed "
                           "(Client.results), or stored if its store flags say so")
        request = svc.ListenRequest(job_id=data.JobId(value=self.job_id), worker_id=data.WorkerId(value=self.worker.id),
                                    timeout=0 if timeout is None else max(1, int(timeout * 1000)))
        raw = await self._rpc.call(lambda t: self._rpc.services.job_result.listen(request, timeout=t), idempotent=True,
                                   seconds=None if timeout is None else timeout + LISTEN_MARGIN_S)
        self._result = result_of(raw, self.worker.runner)
        return self._result

    async def status(self) -> str | None:
        """PENDING, RUNNING or WAIT_RESULT while the job is unfinished; None once it has ended (or
        was deleted, or never existed)."""
        request = data.JobId(value=self.job_id)
        found = await self._rpc.call(lambda t: self._rpc.services.job_status.find(request, timeout=t), idempotent=True)
        return None if found.status is None else found.status.name

    async def cancel(self) -> bool:
        """Delete the job: a waiting job ends as CANCELLED, a running one is stopped (its host
        killed, or its runner's cancel()). False when there was nothing to delete."""
        request = data.JobId(value=self.job_id)
        response = await self._rpc.call(lambda t: self._rpc.services.job.delete(request, timeout=t), idempotent=False)
        return bool(response.is_success)
