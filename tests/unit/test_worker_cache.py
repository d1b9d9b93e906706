"""The worker cache on the job path: fresh after local writes, bounded staleness otherwise."""

from __future__ import annotations

import pytest
import trio

from jobworkerp.config import load_config
from jobworkerp.proto.jobworkerp import data
from jobworkerp.runners.registry import RunnerRegistry
from jobworkerp.storage.memory_rdb import MemoryRepository
from jobworkerp.usecase.workers import Workers

pytestmark = pytest.mark.timeout(10)


async def make() -> tuple[Workers, MemoryRepository]:
    repo = MemoryRepository()
    await repo.open()
    return Workers(repo, RunnerRegistry(), load_config({})), repo


async def test_a_change_made_elsewhere_is_seen_within_the_ttl(autojump_clock) -> None:
    workers, repo = await make()
    worker_id = await workers.create(data.WorkerData(name="a", runner_id=data.RunnerId(value=1)))
    assert (await workers.get(worker_id)).data.name == "a"
    # Another process changes it and its change event is lost:
    await repo.update_worker(worker_id, data.WorkerData(name="b", runner_id=data.RunnerId(value=1)))
    assert (await workers.get(worker_id)).data.name == "a"
    await trio.sleep(load_config({}).worker_cache_ttl_s + 1)
    assert (await workers.get(worker_id)).data.name == "b"


async def test_local_writes_and_change_events_drop_the_entry_at_once(autojump_clock) -> None:
    workers, repo = await make()
    worker_id = await workers.create(data.WorkerData(name="a", runner_id=data.RunnerId(value=1)))
    await workers.get(worker_id)
    await workers.update(data.Worker(id=data.WorkerId(value=worker_id),
                                     data=data.WorkerData(name="b", runner_id=data.RunnerId(value=1))))
    assert (await workers.get(worker_id)).data.name == "b"
    await repo.update_worker(worker_id, data.WorkerData(name="c", runner_id=data.RunnerId(value=1)))
    workers.forget(worker_id)  # what a change event from another process does
    assert (await workers.get(worker_id)).data.name == "c"


async def test_unknown_ids_are_not_remembered(autojump_clock) -> None:
    workers, _ = await make()
    for worker_id in range(1000, 1100):
        assert await workers.get(worker_id) is None
    assert workers._by_id == {}


async def test_a_read_that_races_a_change_does_not_cache_the_old_definition(autojump_clock) -> None:
    """Found by the soak (a chain that did not start): a lookup that read the worker just before
    an update, and stored it after the update dropped the cache, kept serving the old definition
    for a whole TTL."""
    workers, repo = await make()
    worker_id = await workers.create(data.WorkerData(name="a", runner_id=data.RunnerId(value=1)))
    workers.forget(worker_id)
    real_find = repo.find_worker
    read, go = trio.Event(), trio.Event()

    async def slow_find(wid: int) -> data.Worker | None:
        found = await real_find(wid)
        read.set()
        await go.wait()  # the update lands while this lookup still holds the old row
        return found

    repo.find_worker = slow_find  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(workers.get, worker_id)
        await read.wait()
        repo.find_worker = real_find  # type: ignore[method-assign]
        await workers.update(data.Worker(id=data.WorkerId(value=worker_id),
                                         data=data.WorkerData(name="b", runner_id=data.RunnerId(value=1))))
        go.set()
    assert (await workers.get(worker_id)).data.name == "b"


async def test_names_follow_renames_deletes_and_recreation(autojump_clock) -> None:
    """Enqueue by worker_name is served from the cache: a renamed worker's old name stops
    resolving at once, and a name deleted and created again resolves to the new worker."""
    workers, repo = await make()
    worker_id = await workers.create(data.WorkerData(name="a", runner_id=data.RunnerId(value=1)))
    assert (await workers.find_by_name("a")).id.value == worker_id
    await workers.update(data.Worker(id=data.WorkerId(value=worker_id),
                                     data=data.WorkerData(name="b", runner_id=data.RunnerId(value=1))))
    assert await workers.find_by_name("a") is None
    assert (await workers.find_by_name("b")).id.value == worker_id
    assert await workers.delete(worker_id)
    assert await workers.find_by_name("b") is None
    again = await workers.create(data.WorkerData(name="b", runner_id=data.RunnerId(value=1)))
    assert again != worker_id and (await workers.find_by_name("b")).id.value == again
    # Renamed elsewhere with the change event lost: once the id's entry is read again it no
    # longer carries the name asked for, so the name is looked up again, not answered wrongly.
    await repo.update_worker(again, data.WorkerData(name="c", runner_id=data.RunnerId(value=1)))
    await trio.sleep(load_config({}).worker_cache_ttl_s + 1)
    assert (await workers.get(again)).data.name == "c"
    assert await workers.find_by_name("b") is None
    assert (await workers.find_by_name("c")).id.value == again
