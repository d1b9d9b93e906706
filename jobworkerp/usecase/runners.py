"""RunnerService operations: runner rows from the RDB joined with the registry's proto texts."""

from __future__ import annotations

from jobworkerp.errors import InvalidArgument
from jobworkerp.proto.jobworkerp import data
from jobworkerp.runners.registry import RunnerRegistry
from jobworkerp.storage.rdb import Repository

RESERVED_RUNNER_IDS = 1024  # ids up to this are built-in and cannot be deleted


class Runners:
    def __init__(self, repo: Repository, registry: RunnerRegistry) -> None:
        self._repo = repo
        self._registry = registry

    def _with_protos(self, row: data.Runner) -> data.Runner:
        spec = self._registry.get(row.id.value)
        return spec.to_runner() if spec is not None else row

    async def seed(self) -> None:
        """Make sure every registered runner has its row (stable ids across restarts)."""
        for spec in self._registry.all():
            await self._repo.upsert_runner(spec.to_runner(), spec.file_name)

    async def find(self, runner_id: int) -> data.Runner | None:
        row = await self._repo.find_runner(runner_id)
        return None if row is None else self._with_protos(row)

    async def list(self, limit: int | None, offset: int | None) -> list[data.Runner]:
        return [self._with_protos(r) for r in await self._repo.list_runners(limit, offset)]

    async def count(self) -> int:
        return await self._repo.count_runners()

    async def delete(self, runner_id: int) -> bool:
        if 0 < runner_id <= RESERVED_RUNNER_IDS:
            raise InvalidArgument("id", f"runner {runner_id} is built in and cannot be deleted")
        return await self._repo.delete_runner(runner_id)
