"""`jobworkerp mcp` in front of a Scalable cluster's `grpc-front` (a separate worker process runs the
jobs, on the real Redis and MariaDB): tools, a call of each response type, a cancelled call whose
job is deleted, and a worker created through the front turning into a tool."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.testing.server import ServerProcess, connect
from tests.mcp.harness import (
    DEADLINE_S,
    Endpoint,
    ListChanges,
    command_settings,
    create_worker,
    job_gone,
    scenario,
    stored_statuses,
    wait_until,
)
from tests.scalable.services import front_and_worker

pytestmark = pytest.mark.timeout(300)
COMMAND = 1


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with front_and_worker(tmp_path_factory.mktemp("mcp-cluster")) as front:
        yield front


def test_tools_calls_cancellation_and_changes_through_a_front(front: ServerProcess, tmp_path: Path) -> None:
    endpoint = Endpoint("stdio", front.port, tmp_path, None)

    async def run() -> None:
        changes = ListChanges()
        async with connect(front.port) as grpc, endpoint.client("legacy", message_handler=changes.handler) as client:
            assert (await client.list_tools()).tools == []
            await create_worker(grpc, "sc_echo", COMMAND, command_settings("echo"), data.ResponseType.DIRECT)
            await create_worker(grpc, "sc_nap", COMMAND, command_settings("sleep"), data.ResponseType.LISTEN_AFTER)
            with anyio.fail_after(DEADLINE_S):  # stdio: the connection carries notifications from the start
                await changes.beyond(0)
                while {"sc_echo", "sc_nap"} - {tool.name for tool in (await client.list_tools()).tools}:
                    await changes.beyond(changes.count)

            echoed = await client.call_tool("sc_echo", {"args": ["through", "a", "front"]})
            assert not echoed.is_error and echoed.content[0].text == "through a front\n", echoed  # type: ignore[union-attr]
            napped = await client.call_tool("sc_nap", {"args": ["0"]})
            assert not napped.is_error and napped.structured_content["status"] == "SUCCESS", napped

            job_ids: list[int] = []
            seen = anyio.Event()

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                found = re.search(r"job (\d+)", message or "")
                if found:
                    job_ids.append(int(found.group(1)))
                    seen.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: client.call_tool("sc_nap", {"args": ["30"]}, progress_callback=on_progress))
                with anyio.fail_after(DEADLINE_S):
                    await seen.wait()

                async def running() -> bool:
                    status = (await grpc.job_status.find(data.JobId(value=job_ids[0]))).status
                    return status == data.JobStatus.RUNNING

                await wait_until(running, "the job runs on the worker process")
                tg.cancel_scope.cancel()
            await wait_until(lambda: job_gone(grpc, job_ids[0]), "the job is deleted")
            assert await stored_statuses(grpc, job_ids[0]) == [data.ResultStatus.CANCELLED]

    scenario(run)
