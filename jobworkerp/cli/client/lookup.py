"""Cached look-ups of workers and runners for one CLI run.

Encoding a job's args needs worker -> runner -> args proto; printing a list of results needs the
same for every distinct worker. Caching by id (and worker name) keeps that to one round trip per
distinct worker and runner, however many rows are printed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobworkerp.cli.client.errors import NotFoundError
from jobworkerp.client.protocodec import decode_value, raw_value

if TYPE_CHECKING:
    from jobworkerp.client.connection import Services
    from jobworkerp.proto.jobworkerp import data


class Lookup:
    """Runner and worker caches in front of the server (misses are cached too)."""

    def __init__(self, services: Services) -> None:
        self._s = services
        self._runners: dict[int, data.Runner | None] = {}
        self._workers: dict[int, data.Worker | None] = {}
        self._worker_ids_by_name: dict[str, int] = {}

    async def runner(self, runner_id: int) -> data.Runner | None:
        if runner_id not in self._runners:
            from jobworkerp.proto.jobworkerp import data

            self._runners[runner_id] = (await self._s.runner.find(data.RunnerId(value=runner_id))).data
        return self._runners[runner_id]

    async def require_runner(self, runner_id: int) -> data.Runner:
        runner = await self.runner(runner_id)
        if runner is None or runner.data is None:
            raise NotFoundError(f"runner {runner_id} not found (see `jobworkerp-client runner list`)")
        return runner

    def remember_worker(self, worker: data.Worker) -> None:
        if worker.id is not None and worker.data is not None:
            self._workers[worker.id.value] = worker
            self._worker_ids_by_name[worker.data.name] = worker.id.value

    async def worker(self, ref: int | str) -> data.Worker | None:
        """By id when `ref` is an int, else by name."""
        from jobworkerp.proto.jobworkerp import data
        from jobworkerp.proto.jobworkerp import service as svc

        if isinstance(ref, str):
            if ref in self._worker_ids_by_name:
                return self._workers[self._worker_ids_by_name[ref]]
            found = (await self._s.worker.find_by_name(svc.WorkerNameRequest(name=ref))).data
        else:
            if ref in self._workers:
                return self._workers[ref]
            found = (await self._s.worker.find(data.WorkerId(value=ref))).data
            if found is None:
                self._workers[ref] = None
        if found is not None:
            self.remember_worker(found)
        return found

    async def require_worker(self, ref: int | str) -> data.Worker:
        worker = await self.worker(ref)
        if worker is None or worker.data is None:
            what = f"worker {ref!r}" if isinstance(ref, str) else f"worker {ref}"
            raise NotFoundError(f"{what} not found (see `jobworkerp-client worker list`)")
        return worker

    async def _runner_of_worker(self, worker_id: int | None) -> data.Runner | None:
        if not worker_id:
            return None
        worker = await self.worker(worker_id)
        if worker is None or worker.data is None or worker.data.runner_id is None:
            return None
        return await self.runner(worker.data.runner_id.value)

    async def decode_settings(self, runner_id: int | None, raw: bytes) -> Any:
        """A worker's runner_settings as JSON (raw text/base64 when the runner is unknown)."""
        runner = await self.runner(runner_id) if runner_id else None
        proto = runner.data.runner_settings_proto if runner is not None and runner.data else None
        return decode_value(proto, raw) if proto else raw_value(raw)

    async def decode_args(self, worker_id: int | None, raw: bytes) -> Any:
        """A job's args as JSON via its worker's runner (raw when the worker is gone)."""
        runner = await self._runner_of_worker(worker_id)
        proto = runner.data.job_args_proto if runner is not None and runner.data else None
        return decode_value(proto, raw) if proto else raw_value(raw)

    async def decode_output(self, worker_id: int | None, items: list[bytes], success: bool) -> list[Any]:
        """Result output items: JSON via result_output_proto when the runner has one, else text.

        A failed run's single item is the error text, never the result message, so it is not decoded.
        """
        runner = await self._runner_of_worker(worker_id) if success else None
        proto = runner.data.result_output_proto if runner is not None and runner.data else None
        return [decode_value(proto, item) if proto else raw_value(item) for item in items]
