"""Worker / job / result management RPCs, as a client uses them."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, ServerProcess, connect, run

pytestmark = pytest.mark.timeout(60)


def command_worker(name: str, command: str = "echo", **kwargs) -> data.WorkerData:
    return data.WorkerData(name=name, runner_id=data.RunnerId(value=1),
                           runner_settings=bytes(runner_pb.CommandRunnerSettings(name=command)), **kwargs)


def args(*argv: str) -> bytes:
    return bytes(runner_pb.CommandArgs(args=list(argv)))


def test_worker_lifecycle(server: ServerProcess) -> None:
    async def scenario(c: Client):
        before = (await c.worker.count(svc.CountCondition())).total
        worker_id = (await c.worker.create(command_worker(
            "crud-a", next_workers=[data.WorkerId(value=7)], use_static=True,
            retry_policy=data.RetryPolicy(type=data.RetryType.EXPONENTIAL, interval=100, max_interval=1000,
                                          max_retry=3, basis=2.0)))).id
        found = (await c.worker.find(worker_id)).data
        by_name = (await c.worker.find_by_name(svc.WorkerNameRequest(name="crud-a"))).data
        updated = await c.worker.update(data.Worker(id=worker_id, data=command_worker("crud-b", "cat")))
        after_update = (await c.worker.find(worker_id)).data
        listed = [w.data.name async for w in c.worker.find_list(svc.FindListRequest(limit=1))]
        count = (await c.worker.count(svc.CountCondition())).total
        deleted = await c.worker.delete(worker_id)
        gone = (await c.worker.find(worker_id)).data
        return before, found, by_name, updated, after_update, listed, count, deleted, gone

    async def go():
        async with connect(server.port) as c:
            return await scenario(c)

    before, found, by_name, updated, after_update, listed, count, deleted, gone = run(go())
    assert found.data.name == "crud-a" and found.data.use_static
    assert found.data.channel is None
    assert [w.value for w in found.data.next_workers] == [7]
    assert found.data.retry_policy.max_retry == 3 and found.data.retry_policy.type == data.RetryType.EXPONENTIAL
    assert by_name.id.value == found.id.value
    assert updated.is_success and after_update.data.name == "crud-b"
    assert runner_pb.CommandRunnerSettings.parse(after_update.data.runner_settings).name == "cat"
    assert listed == ["crud-b"]  # newest first, limit 1
    assert count == before + 1
    assert deleted.is_success and gone is None


def test_with_backup_job_is_findable_until_it_finishes(server: ServerProcess) -> None:
    async def scenario():
        async with connect(server.port) as c:
            worker_id = (await c.worker.create(command_worker(
                "backup", "sleep", queue_type=data.QueueType.WITH_BACKUP, response_type=data.ResponseType.LISTEN_AFTER,
                store_success=True, store_failure=True))).id
            job_id = (await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=args("0.3"), uniq_key="only-one",
                                                         priority=data.Priority.HIGH))).id
            while_queued = (await c.job.find(job_id)).data
            listed = [j.id.value async for j in c.job.find_list(svc.FindListRequest())]
            statuses = {s.id.value: s.status async for s in c.job_status.find_all(data.Empty())}
            result = await c.job_result.listen(svc.ListenRequest(job_id=job_id, worker_id=worker_id, timeout=30_000))
            after = (await c.job.find(job_id)).data
            return job_id.value, while_queued, listed, statuses, result, after

    job_id, while_queued, listed, statuses, result, after = run(scenario())
    assert while_queued.data.uniq_key == "only-one" and while_queued.data.priority == data.Priority.HIGH
    assert job_id in listed
    assert statuses[job_id] in (data.JobStatus.PENDING, data.JobStatus.RUNNING)
    assert result.data.status == data.ResultStatus.SUCCESS and result.data.uniq_key == "only-one"
    assert after is None


def test_results_can_be_listed_counted_and_deleted(server: ServerProcess) -> None:
    async def scenario():
        async with connect(server.port) as c:
            worker_id = (await c.worker.create(command_worker("results", store_success=True))).id
            job_ids = []
            for word in ("one", "two"):
                job_id = (await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=args(word)))).id
                await c.job_result.listen(svc.ListenRequest(job_id=job_id, worker_id=worker_id, timeout=30_000))
                job_ids.append(job_id.value)
            before = (await c.job_result.count(svc.CountCondition())).total
            listed = [r async for r in c.job_result.find_list(svc.FindListRequest())]
            mine = [r for r in listed if r.data.job_id.value in job_ids]
            deleted = await c.job_result.delete(mine[0].id)
            after = (await c.job_result.count(svc.CountCondition())).total
            return job_ids, before, mine, deleted, after

    job_ids, before, mine, deleted, after = run(scenario())
    assert [r.data.job_id.value for r in mine] == sorted(job_ids, reverse=True)  # newest job first
    assert [r.data.output.items for r in mine] == [[b"two\n"], [b"one\n"]]
    assert all(r.data.worker_name == "results" for r in mine)
    assert deleted.is_success and after == before - 1


def test_listen_stream_by_worker_delivers_each_result_of_that_worker(server: ServerProcess) -> None:
    async def scenario():
        async with connect(server.port) as c:
            worker_id = (await c.worker.create(command_worker("streamed"))).id
            other_id = (await c.worker.create(command_worker("not-streamed"))).id
            stream = c.job_result.listen_stream_by_worker(svc.ListenStreamByWorkerRequest(worker_name="streamed"))
            received: asyncio.Queue[data.JobResult] = asyncio.Queue()

            async def pump() -> None:
                async for result in stream:
                    await received.put(result)

            pump_task = asyncio.ensure_future(pump())
            # The subscription is live once a probe job's result comes through.
            while received.empty():  # noqa: ASYNC110 - no other signal that the subscription is registered
                await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=args("probe")))
                await asyncio.sleep(0.1)
            await c.job.enqueue(svc.JobRequest(worker_id=other_id, args=args("elsewhere")))
            sent = [(await c.job.enqueue(svc.JobRequest(worker_id=worker_id, args=args(f"n{i}")))).id.value
                    for i in range(3)]
            got: list[data.JobResult] = []
            while len(got) < 3:
                result = await received.get()
                if result.data.output.items != [b"probe\n"]:  # late probe results are expected
                    got.append(result)
            pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump_task
            return sent, got

    sent, got = run(scenario())
    assert sorted(r.data.job_id.value for r in got) == sorted(sent)
    assert sorted(r.data.output.items[0] for r in got) == [b"n0\n", b"n1\n", b"n2\n"]
