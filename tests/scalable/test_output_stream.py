"""Streamed output across processes: a worker process runs the job and writes its output stream
to Redis, the grpc-front process serves EnqueueForStream and ListenStream from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobworkerp.proto.jobworkerp import data, ext
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, run
from tests.e2e.streamed import HANG_S, collect, command_worker, gated, open_gate_on_first_data, sh
from tests.scalable.services import front_and_worker

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with front_and_worker(tmp_path_factory.mktemp("stream-cluster")) as front:
        yield front


def test_chunks_written_by_a_worker_process_reach_the_fronts_listeners_live_and_late(
        front: ServerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    async def scenario() -> tuple[list[tuple[str, object]], list[tuple[str, object]]]:
        async with connect(front.port) as c:
            streams = ext.JobStreamServiceStub(c.channel, timeout=HANG_S)
            await c.worker.create(command_worker("mp-streamed", response_type=data.ResponseType.LISTEN_AFTER,
                                                 store_success=True, store_failure=True))
            request = svc.JobRequest(worker_name="mp-streamed", args=sh(gated(gate, "one", "two")))
            live = await collect(streams.enqueue_for_stream(request), open_gate_on_first_data(gate))
            job_id = data.JobId(value=int(live[0][1]))  # type: ignore[call-overload]
            late = await collect(streams.listen_stream(ext.ListenStreamRequest(job_id=job_id)))
            return live, late

    live, late = run(scenario(), HANG_S)
    assert live[1:-1] == [("data", b"one\n"), ("data", b"two\n")]
    assert late[:-1] == [("data", b"one\n"), ("data", b"two\n")]
    for items in (live, late):
        kind, result = items[-1]
        assert kind == "end" and isinstance(result, data.JobResult)
        assert result.data.status == data.ResultStatus.SUCCESS and result.data.output.items == [b"one\ntwo\n"]
