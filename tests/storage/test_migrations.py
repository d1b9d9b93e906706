"""The dialect-independent migration rules, against an in-memory target."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.lowlevel

from jobworkerp.storage.migrations import Migration, MigrationError, migrate, pending, validate

pytestmark = pytest.mark.timeout(10)

STEPS = (
    Migration(1, "tables", ("CREATE a", "CREATE b")),
    Migration(2, "index", ("CREATE INDEX",)),
    Migration(3, "column", ("ALTER",)),
)


class FakeTarget:
    """Records what a driver would have executed; ``fail_on`` simulates a crash mid-step."""

    def __init__(self, applied: set[int] | None = None, fail_on: str | None = None) -> None:
        self.applied = set(applied or ())
        self.executed: list[str] = []
        self.fail_on = fail_on
        self.lock_holders = 0
        self.max_lock_holders = 0

    @asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        self.lock_holders += 1
        self.max_lock_holders = max(self.max_lock_holders, self.lock_holders)
        try:
            yield
        finally:
            self.lock_holders -= 1

    async def ensure_version_table(self) -> None:
        self.executed.append("CREATE schema_version")

    async def applied_versions(self) -> set[int]:
        return set(self.applied)

    async def apply(self, migration: Migration) -> None:
        for statement in migration.statements:
            await trio.lowlevel.checkpoint()
            if statement == self.fail_on:
                raise RuntimeError("crash")
            self.executed.append(statement)
        self.applied.add(migration.version)


async def test_fresh_database_gets_every_step_in_order() -> None:
    target = FakeTarget()
    assert await migrate(target, STEPS) == [1, 2, 3]
    assert target.executed == ["CREATE schema_version", "CREATE a", "CREATE b", "CREATE INDEX", "ALTER"]


async def test_only_missing_steps_run_and_a_second_run_is_a_no_op() -> None:
    target = FakeTarget(applied={1})
    assert await migrate(target, STEPS) == [2, 3]
    assert await migrate(target, STEPS) == []
    assert target.applied == {1, 2, 3}


async def test_a_crashed_step_is_not_recorded_and_runs_again() -> None:
    target = FakeTarget(fail_on="CREATE INDEX")
    with pytest.raises(RuntimeError):
        await migrate(target, STEPS)
    assert target.applied == {1}
    target.fail_on = None
    assert await migrate(target, STEPS) == [2, 3]


async def test_concurrent_migrations_are_serialised_by_the_lock() -> None:
    target = FakeTarget()
    lock = trio.Lock()

    @asynccontextmanager
    async def real_lock() -> AsyncIterator[None]:
        async with lock:
            yield

    target.lock = real_lock  # type: ignore[method-assign]
    results: list[list[int]] = []

    async def run() -> None:
        results.append(await migrate(target, STEPS))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        nursery.start_soon(run)
    assert sorted(results) == [[], [1, 2, 3]]
    assert target.executed.count("CREATE a") == 1


def test_versions_from_a_newer_release_are_refused() -> None:
    with pytest.raises(MigrationError, match=r"versions \[4, 7\] unknown to this release \(latest known is 3\)"):
        pending(STEPS, {1, 2, 3, 4, 7})


@pytest.mark.parametrize(
    "steps",
    [
        (Migration(2, "starts at two", ("X",)),),
        (Migration(1, "a", ("X",)), Migration(1, "dup", ("Y",))),
        (Migration(1, "a", ("X",)), Migration(3, "gap", ("Y",))),
        (Migration(1, "empty", ()),),
    ],
)
def test_malformed_migration_lists_are_rejected(steps: tuple[Migration, ...]) -> None:
    with pytest.raises(MigrationError):
        validate(steps)


def test_the_mysql_migration_list_is_valid() -> None:
    from jobworkerp.storage.mysql_schema import MIGRATIONS

    validate(MIGRATIONS)
    assert pending(MIGRATIONS, set()) == list(MIGRATIONS)
