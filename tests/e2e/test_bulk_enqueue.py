"""BulkJobService.EnqueueBatch (beyond upstream): one answer per item, in order; a bad item does
not fail the others; the good ones run; the item cap, the auth token and reflection apply to it
like to the v0.7 services. Against a real server in both storage modes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.reflection.v1.reflection_grpc import ServerReflectionStub
from grpclib.reflection.v1.reflection_pb2 import ServerReflectionRequest

from jobworkerp.proto.jobworkerp import data, ext
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, run

pytestmark = pytest.mark.timeout(120)

CAP = 3
TOKEN = "bulk-s3cret"
AUTH = {"jobworkerp-auth": TOKEN}


def _echo(name: str, response_type: data.ResponseType) -> data.WorkerData:
    return data.WorkerData(name=name, runner_id=data.RunnerId(value=1), response_type=response_type,
                           runner_settings=bytes(runner_pb.CommandRunnerSettings(name="echo")),
                           store_success=True, store_failure=True)


def _item(worker: str, *words: str, **fields: object) -> svc.JobRequest:
    return svc.JobRequest(worker_name=worker, args=bytes(runner_pb.CommandArgs(args=list(words))), **fields)


def _outcome(result: ext.EnqueueItemResult) -> int | tuple[Status, str]:
    if result.id is not None:
        return result.id.value
    assert result.error is not None
    return Status(result.error.code), result.error.message


def test_mixed_batch_answers_per_item_in_order_and_the_good_jobs_run(server: ServerProcess) -> None:
    async def scenario() -> tuple[ext.EnqueueBatchResponse, list[bytes]]:
        async with connect(server.port) as c:
            worker_id = (await c.worker.create(_echo("bulk-echo", data.ResponseType.LISTEN_AFTER))).id
            await c.worker.create(_echo("bulk-direct", data.ResponseType.DIRECT))
            items = [
                _item("bulk-echo", "first"),
                _item("no-such-worker", "x"),
                # Due in 2 s, so it still holds its key when the next item is placed.
                _item("bulk-echo", "keyed", uniq_key="bulk-k1", run_after_time=int(time.time() * 1000) + 2000),
                _item("bulk-echo", "again", uniq_key="bulk-k1"),          # the earlier item holds the key
                svc.JobRequest(worker_name="bulk-echo", args=b"\xff\xff"),  # not a CommandArgs
                _item("bulk-direct", "x"),
                svc.JobRequest(worker_id=worker_id, args=bytes(runner_pb.CommandArgs(args=["by-id"]))),
                _item("bulk-echo", "x", timeout=2**63),
                svc.JobRequest(args=b""),                                  # no worker at all
                _item("bulk-echo", "last", priority=data.Priority.HIGH),
            ]
            reply = await c.bulk.enqueue_batch(ext.EnqueueBatchRequest(items=items))
            outputs = []
            for result in reply.results:
                if result.id is not None:
                    done = await c.job_result.listen(svc.ListenRequest(job_id=result.id, worker_name="bulk-echo",
                                                                       timeout=30_000))
                    assert done.data is not None and done.data.status == data.ResultStatus.SUCCESS, done
                    assert done.data.output is not None
                    outputs.append(done.data.output.items[0])
            return reply, outputs

    reply, outputs = run(scenario(), timeout=90)
    outcomes = [_outcome(r) for r in reply.results]
    assert len(outcomes) == 10
    accepted = [o for o in outcomes if isinstance(o, int)]
    assert [i for i, o in enumerate(outcomes) if isinstance(o, int)] == [0, 2, 6, 9]
    assert len(set(accepted)) == 4 and reply.accepted == 4 and reply.failed == 6
    errors = {i: o for i, o in enumerate(outcomes) if not isinstance(o, int)}
    assert errors[1][0] == Status.INVALID_ARGUMENT and errors[1][1].startswith("items[1].worker_name:")
    assert errors[3][0] == Status.ALREADY_EXISTS and "bulk-k1" in errors[3][1] and str(accepted[1]) in errors[3][1]
    assert errors[4][0] == Status.INVALID_ARGUMENT and errors[4][1].startswith("items[4].args")
    assert errors[5][0] == Status.INVALID_ARGUMENT and "DIRECT" in errors[5][1]
    assert errors[5][1].startswith("items[5].worker_name:")
    assert errors[7][0] == Status.INVALID_ARGUMENT and errors[7][1].startswith("items[7].timeout:")
    assert errors[8][0] == Status.INVALID_ARGUMENT and errors[8][1].startswith("items[8].worker:")
    assert outputs == [b"first\n", b"keyed\n", b"by-id\n", b"last\n"]


def test_items_sharing_a_uniq_key_resolve_in_item_order_among_many(server: ServerProcess) -> None:
    """Items are placed concurrently, but the first item with a key takes it, as in sequential calls."""
    async def scenario() -> ext.EnqueueBatchResponse:
        async with connect(server.port) as c:
            await c.worker.create(_echo("bulk-many", data.ResponseType.NO_RESULT))
            later = int(time.time() * 1000) + 600_000  # the key's holder waits, so it keeps the key
            items = [_item("bulk-many", str(i)) if i % 10 != 3 else
                     _item("bulk-many", str(i), uniq_key="bulk-shared", run_after_time=later) for i in range(300)]
            reply = await c.bulk.enqueue_batch(ext.EnqueueBatchRequest(items=items))
            for result in reply.results[3::10]:
                if result.id is not None:
                    await c.job.delete(result.id)
            return reply

    reply = run(scenario())
    outcomes = [_outcome(r) for r in reply.results]
    keyed = [i for i in range(300) if i % 10 == 3]
    assert isinstance(outcomes[keyed[0]], int)
    for i in keyed[1:]:
        assert outcomes[i] == (Status.ALREADY_EXISTS, f"items[{i}]: uniq_key 'bulk-shared' is taken by job "
                                                      f"{outcomes[keyed[0]]}")
    ids = [o for o in outcomes if isinstance(o, int)]
    assert len(ids) == len(set(ids)) == 300 - len(keyed) + 1 == reply.accepted


def test_an_empty_batch_is_answered_with_no_items(server: ServerProcess) -> None:
    async def scenario() -> ext.EnqueueBatchResponse:
        async with connect(server.port) as c:
            return await c.bulk.enqueue_batch(ext.EnqueueBatchRequest())

    reply = run(scenario())
    assert reply.results == [] and reply.accepted == 0 and reply.failed == 0


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("capped"),
                         {"JOB_ENQUEUE_BATCH_MAX_ITEMS": str(CAP), "AUTH_TOKEN": TOKEN}).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def test_a_batch_over_the_cap_is_refused_whole(capped: ServerProcess) -> None:
    async def scenario() -> tuple[GRPCError, int, ext.EnqueueBatchResponse]:
        async with connect(capped.port) as c:
            await c.worker.create(_echo("capped-echo", data.ResponseType.NO_RESULT), metadata=AUTH)
            too_many = [_item("capped-echo", str(i), uniq_key=f"cap-{i}") for i in range(CAP + 1)]
            with pytest.raises(GRPCError) as refused:
                await c.bulk.enqueue_batch(ext.EnqueueBatchRequest(items=too_many), metadata=AUTH)
            # Nothing of it was accepted: every key is still free.
            at_cap = await c.bulk.enqueue_batch(ext.EnqueueBatchRequest(items=too_many[:CAP]), metadata=AUTH)
            return refused.value, CAP, at_cap

    refusal, cap, at_cap = run(scenario())
    assert refusal.status == Status.RESOURCE_EXHAUSTED
    assert f"JOB_ENQUEUE_BATCH_MAX_ITEMS={cap}" in (refusal.message or "")
    assert (refusal.message or "").startswith("items:")
    assert at_cap.accepted == cap and at_cap.failed == 0


def test_the_auth_token_guards_it_and_reflection_lists_it(capped: ServerProcess) -> None:
    async def scenario() -> tuple[GRPCError, list[str]]:
        async with connect(capped.port) as c:
            with pytest.raises(GRPCError) as refused:
                await c.bulk.enqueue_batch(ext.EnqueueBatchRequest(items=[_item("capped-echo", "x")]))
            async with ServerReflectionStub(c.channel).ServerReflectionInfo.open(metadata=AUTH) as stream:
                await stream.send_message(ServerReflectionRequest(list_services=""), end=True)
                reply = await stream.recv_message()
            assert reply is not None
            return refused.value, [s.name for s in reply.list_services_response.service]

    refusal, services = run(scenario())
    assert refusal.status == Status.UNAUTHENTICATED
    assert "jobworkerp.ext.BulkJobService" in services
