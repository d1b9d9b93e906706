"""Storage drivers behind small protocols: relational DB, job queue, job status, result bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from jobworkerp.config import STANDALONE, Config
from jobworkerp.storage.job_status import JobStatusStore, MemoryJobStatusStore
from jobworkerp.storage.memory_queue import MemoryJobQueue
from jobworkerp.storage.pubsub import MemoryResultBus, ResultBus
from jobworkerp.storage.queue import JobQueue
from jobworkerp.storage.rdb import Repository
from jobworkerp.storage.uniq_keys import MemoryUniqKeyGuard, UniqKeyGuard


@dataclass
class Storage:
    """Everything the core reads and writes, for one storage mode."""

    repo: Repository
    queue: JobQueue
    status: JobStatusStore
    bus: ResultBus
    uniq_keys: UniqKeyGuard


@asynccontextmanager
async def open_storage(config: Config) -> AsyncIterator[Storage]:
    """Open the drivers of the configured mode; closes them (flushing writes) on exit."""
    if config.storage_type != STANDALONE:
        raise NotImplementedError("STORAGE_TYPE=Scalable is not available yet; use Standalone")
    from jobworkerp.storage.sqlite import SqliteRepository

    repo = SqliteRepository(config.sqlite_dbname)
    await repo.open()
    try:
        yield Storage(repo=repo, queue=MemoryJobQueue(), status=MemoryJobStatusStore(), bus=MemoryResultBus(),
                      uniq_keys=MemoryUniqKeyGuard())
    finally:
        await repo.aclose()
