"""Ordered, apply-once schema migrations, independent of the SQL dialect.

Why: the schema has to evolve after the first release, and a server must be able to open a
database created by any earlier release. Each database records the versions it has applied
in a ``schema_version`` table; opening applies the missing steps in order, exactly once.

The dialect-specific part (how to lock, how to read and record versions, how to run a
statement) lives in a :class:`MigrationTarget` supplied by the driver; the rules (ordering,
what is pending, refusing a database written by a newer release) live here so every
driver applies them the same way. A synchronous driver (SQLite runs in a worker thread) can
reuse :func:`validate` and :func:`pending` directly and skip the async :func:`migrate`.

Steps must be written so that re-running a partly applied step is harmless (``IF NOT
EXISTS``): MySQL commits DDL implicitly, so a crash between a step's statements and its
version record is repaired by running the step again on the next start.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol


class MigrationError(Exception):
    """The migration list or the database's recorded versions are inconsistent."""


@dataclass(frozen=True)
class Migration:
    """One schema step: ``statements`` run in order, then ``version`` is recorded."""

    version: int
    description: str
    statements: tuple[str, ...]


class MigrationTarget(Protocol):
    """One connection to the database being migrated (implemented per dialect)."""

    def lock(self) -> AbstractAsyncContextManager[None]:
        """Exclude other processes migrating the same database at the same time."""

    async def ensure_version_table(self) -> None:
        """Create the ``schema_version`` table when it is missing."""

    async def applied_versions(self) -> set[int]:
        """Versions already recorded in ``schema_version``."""

    async def apply(self, migration: Migration) -> None:
        """Run the step's statements and record its version."""


def validate(migrations: Sequence[Migration]) -> None:
    """Versions must be 1, 2, 3, … in list order: a gap or a reorder is a coding mistake."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migration {migration.description!r} has version {migration.version}, expected {expected}"
            )
        if not migration.statements:
            raise MigrationError(f"migration {migration.version} has no statements")


def pending(migrations: Sequence[Migration], applied: Collection[int]) -> list[Migration]:
    """The steps still to run, in order.

    A recorded version this code does not know means a newer release already migrated the
    database; running against a schema we do not understand could corrupt it, so refuse.
    """
    validate(migrations)
    known = {m.version for m in migrations}
    unknown = sorted(set(applied) - known)
    if unknown:
        raise MigrationError(
            f"database schema has versions {unknown} unknown to this release "
            f"(latest known is {max(known, default=0)}); upgrade jobworkerp"
        )
    return [m for m in migrations if m.version not in applied]


async def migrate(target: MigrationTarget, migrations: Sequence[Migration]) -> list[int]:
    """Apply every pending step under the target's lock; returns the versions applied now."""
    validate(migrations)
    async with target.lock():
        await target.ensure_version_table()
        todo = pending(migrations, await target.applied_versions())
        for migration in todo:
            await target.apply(migration)
    return [m.version for m in todo]
