"""RunnerService operations: runner rows from the RDB joined with the registry's proto texts."""

from __future__ import annotations

import logging
from dataclasses import replace

from jobworkerp.errors import AlreadyExists, InvalidArgument
from jobworkerp.ids import SnowflakeGenerator
from jobworkerp.proto.jobworkerp import data
from jobworkerp.runners.registry import RunnerRegistry
from jobworkerp.storage.rdb import Repository
from jobworkerp.usecase.paging import page

log = logging.getLogger(__name__)

RESERVED_RUNNER_IDS = 1024  # ids up to this are built-in and cannot be deleted


class Runners:
    def __init__(self, repo: Repository, registry: RunnerRegistry, ids: SnowflakeGenerator | None = None) -> None:
        self._repo = repo
        self._registry = registry
        self._ids = ids or SnowflakeGenerator()

    def _with_protos(self, row: data.Runner) -> data.Runner:
        spec = self._registry.get(row.id.value)
        return spec.to_runner() if spec is not None else row

    async def seed(self) -> None:
        """Make sure every registered runner has its row, and give discovered plugins their ids.

        A plugin keeps the id of the row that already carries its name, so workers that refer to
        it survive a restart; a new plugin gets a fresh snowflake id (far above the reserved ids).
        Rows of plugins that are gone stay, so a plugin that comes back gets its old id again.
        """
        for spec in self._registry.all():
            await self._repo.upsert_runner(spec.to_runner(), spec.file_name)
        pending = self._registry.pending_plugins()
        if not pending:
            return
        ids_by_name = await self._ids_by_name()
        for plugin in pending:
            runner_id = ids_by_name.get(plugin.name) or self._ids.next_id()
            if runner_id <= RESERVED_RUNNER_IDS:
                log.error("plugin runner %r skipped: its name belongs to reserved runner %d", plugin.name, runner_id)
                continue
            try:
                await self._repo.upsert_runner(replace(plugin, id=runner_id).to_runner(), plugin.file_name)
            except AlreadyExists:
                # Another process sharing the database registered the same new plugin first: use its id.
                runner_id = (await self._ids_by_name()).get(plugin.name, 0)
                if runner_id <= RESERVED_RUNNER_IDS:
                    log.error("plugin runner %r skipped: its runner row could not be written", plugin.name)
                    continue
            except Exception:
                log.exception("plugin runner %r skipped: its runner row could not be written", plugin.name)
                continue
            spec = self._registry.assign(plugin, runner_id)
            log.info("plugin runner %r registered with id %d", spec.name, spec.id)

    async def _ids_by_name(self) -> dict[str, int]:
        return {row.data.name: row.id.value for row in await self._repo.list_runners(None, None)
                if row.data is not None and row.id is not None}

    async def find(self, runner_id: int) -> data.Runner | None:
        row = await self._repo.find_runner(runner_id)
        return None if row is None else self._with_protos(row)

    async def list(self, limit: int | None, offset: int | None) -> list[data.Runner]:
        return [self._with_protos(r) for r in await self._repo.list_runners(*page(limit, offset))]

    async def count(self) -> int:
        return await self._repo.count_runners()

    async def delete(self, runner_id: int) -> bool:
        if 0 < runner_id <= RESERVED_RUNNER_IDS:
            raise InvalidArgument("id", f"runner {runner_id} is built in and cannot be deleted")
        return await self._repo.delete_runner(runner_id)
