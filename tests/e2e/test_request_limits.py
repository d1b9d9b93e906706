"""A client must not exhaust the host: request size, next_workers chains, numeric ranges and page
sizes are bounded, and each refusal names what was wrong. Real servers in both storage modes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from grpclib.const import Status

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, ServerProcess, connect, run
from tests.chaos.protowire import LEN, MB, record
from tests.chaos.raw_grpc import Method, RawBody, Reply, call_raw, raw_channel, served_methods
from tests.e2e.refusals import status_of

pytestmark = pytest.mark.timeout(300)

FIND_BY_NAME = next(m for m in served_methods() if m.path == "/jobworkerp.service.WorkerService/FindByName")
DEFAULT_LIMIT = 8 * MB  # GRPC_MAX_MESSAGE_BYTES when not set
RSS_CEILING_KB = 200 * 1024
ECHO = bytes(runner_pb.CommandRunnerSettings(name="echo"))


def worker(name: str, next_workers: list[int] | None = None, **kwargs: object) -> data.WorkerData:
    return data.WorkerData(name=name, runner_id=data.RunnerId(value=1), runner_settings=ECHO,
                           next_workers=[data.WorkerId(value=n) for n in next_workers or []], **kwargs)




def invalid(port: int, call: Callable[[Client], Awaitable[object]], field: str) -> str:
    status, message = status_of(port, call)
    assert status == Status.INVALID_ARGUMENT and message.startswith(field), (status, message)
    return message


def create(port: int, wd: data.WorkerData) -> int:
    async def scenario() -> int:
        async with connect(port) as c:
            return (await c.worker.create(wd)).id.value

    return run(scenario())


def send_raw(port: int, method: Method, body: RawBody) -> Reply:
    async def once() -> Reply:
        channel = raw_channel(port)
        try:
            return await call_raw(channel, method, body, 120.0)
        finally:
            channel.close()

    return run(once(), timeout=180)


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak since the process started), in kB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}


def name_request(total: int) -> bytes:
    """A WorkerNameRequest of exactly `total` bytes (tag, 4-byte length varint, the name)."""
    name_len = total - 1 - 4
    assert name_len >= 2**21  # so the length varint takes 4 bytes
    message = record(1, LEN, b"n" * name_len)
    assert len(message) == total
    return message


# --- request size ---------------------------------------------------------------------------------

def test_a_64_mb_request_is_refused_before_it_is_read(server: ServerProcess) -> None:
    assert server.proc is not None
    reply = send_raw(server.port, FIND_BY_NAME, RawBody(message=record(1, LEN, b"x" * (64 * MB))))
    assert reply.status == Status.RESOURCE_EXHAUSTED, (reply.status, reply.message, reply.broken)
    assert "GRPC_MAX_MESSAGE_BYTES" in reply.message
    memory = memory_kb(server.proc.pid)
    assert memory["VmRSS"] < RSS_CEILING_KB and memory["VmHWM"] < RSS_CEILING_KB, memory

    async def still_serves() -> int:
        async with connect(server.port) as c:
            return (await c.worker.count(svc.CountCondition())).total

    assert run(still_serves()) >= 0


def test_a_message_at_the_limit_is_read_and_one_byte_more_is_not(server: ServerProcess) -> None:
    at_limit = send_raw(server.port, FIND_BY_NAME, RawBody(message=name_request(DEFAULT_LIMIT)))
    assert at_limit.status == Status.OK, (at_limit.status, at_limit.message)
    past = send_raw(server.port, FIND_BY_NAME, RawBody(message=name_request(DEFAULT_LIMIT + 1)))
    assert past.status == Status.RESOURCE_EXHAUSTED, (past.status, past.message)
    assert f"{DEFAULT_LIMIT + 1} bytes" in past.message


# --- next_workers ---------------------------------------------------------------------------------

def test_a_worker_naming_itself_is_refused(server: ServerProcess) -> None:
    me = create(server.port, worker("self-loop"))
    message = invalid(server.port, lambda c: c.worker.update(data.Worker(id=data.WorkerId(value=me),
                                                                         data=worker("self-loop", [me]))),
                      "next_workers[0]")
    assert "itself" in message


def test_a_worker_named_twice_is_refused(server: ServerProcess) -> None:
    other = create(server.port, worker("twice-target"))
    message = invalid(server.port, lambda c: c.worker.create(worker("twice", [other, other])), "next_workers[1]")
    assert "already listed" in message


def test_a_cycle_through_other_workers_is_refused(server: ServerProcess) -> None:
    a = create(server.port, worker("cycle-a"))
    b = create(server.port, worker("cycle-b", [a]))
    c_id = create(server.port, worker("cycle-c", [b]))
    message = invalid(server.port, lambda c: c.worker.update(data.Worker(id=data.WorkerId(value=a),
                                                                         data=worker("cycle-a", [c_id]))),
                      "next_workers")
    assert "cycle" in message and f"{a} -> {c_id} -> {b} -> {a}" in message


def test_a_new_worker_closing_a_cycle_through_its_own_future_id_is_refused(server: ServerProcess) -> None:
    """Ids are sequential, so a stored worker can name the id the next one will get."""
    first = create(server.port, worker("future-first"))
    waiting = create(server.port, worker("future-waiting", [first + 2]))
    if waiting != first + 1:
        pytest.skip(f"ids are not sequential here ({first}, {waiting})")
    invalid(server.port, lambda c: c.worker.create(worker("future-closer", [waiting])), "next_workers")

    async def closer() -> data.Worker | None:
        async with connect(server.port) as c:
            return (await c.worker.find_by_name(svc.WorkerNameRequest(name="future-closer"))).data

    assert run(closer()) is None  # refused, and not left behind


def test_a_chain_deeper_than_32_jobs_is_refused(server: ServerProcess) -> None:
    nxt = create(server.port, worker("deep-0"))
    for i in range(1, 33):  # deep-32 starts 32 chained jobs: the limit
        nxt = create(server.port, worker(f"deep-{i}", [nxt]))
    message = invalid(server.port, lambda c: c.worker.create(worker("deep-33", [nxt])), "next_workers")
    assert "33 jobs long" in message


def test_a_chain_fanning_out_past_1000_jobs_is_refused(server: ServerProcess) -> None:
    """Two workers per layer, each naming both of the next layer: a job of the top starts
    2 + 4 + ... + 2**k jobs. Nine layers make 1022."""
    layer: list[int] = []
    for depth in range(9):
        layer = [create(server.port, worker(f"fan-{depth}-{k}", layer)) for k in range(2)]
    message = invalid(server.port, lambda c: c.worker.create(worker("fan-top", layer)), "next_workers")
    assert "1022 chained jobs" in message


# --- numeric ranges -------------------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "field"), [
    (data.RetryPolicy(type=data.RetryType.EXPONENTIAL, interval=1, max_retry=1, basis=1e38), "retry_policy.basis"),
    # 4e9 * 2**32 ms: a retry's run_after_time past what a BIGINT holds.
    (data.RetryPolicy(type=data.RetryType.LINEAR, interval=4_000_000_000, max_retry=2**32 - 1, basis=1.0),
     "retry_policy.max_interval"),
    (data.RetryPolicy(type=data.RetryType.EXPONENTIAL, interval=1000, max_retry=64, basis=2.0),
     "retry_policy.max_interval"),
])
def test_retry_policies_out_of_range_are_refused(server: ServerProcess, policy: data.RetryPolicy, field: str) -> None:
    invalid(server.port, lambda c: c.worker.create(worker(f"policy-{field}", retry_policy=policy)), field)


def test_a_capped_policy_with_many_retries_is_accepted(server: ServerProcess) -> None:
    policy = data.RetryPolicy(type=data.RetryType.LINEAR, interval=4_000_000_000, max_interval=60_000,
                              max_retry=2**32 - 1, basis=1.0)
    assert create(server.port, worker("capped", retry_policy=policy)) > 0


@pytest.mark.parametrize(("request_fields", "field"), [
    ({"timeout": 2**64 - 1}, "timeout"),
    ({"run_after_time": 2**63 - 1}, "run_after_time"),
])
def test_job_times_out_of_range_are_refused(server: ServerProcess, request_fields: dict[str, int],
                                            field: str) -> None:
    create(server.port, worker(f"times-{field}"))
    request = svc.JobRequest(worker_name=f"times-{field}", args=bytes(runner_pb.CommandArgs(args=["x"])),
                             **request_fields)
    invalid(server.port, lambda c: c.job.enqueue(request), field)


# --- page sizes -----------------------------------------------------------------------------------

def test_list_calls_have_a_default_and_a_maximum_page_size(server: ServerProcess) -> None:
    async def scenario() -> tuple[int, int, int]:
        async with connect(server.port) as c:
            total = (await c.worker.count(svc.CountCondition())).total
            for i in range(max(0, 101 - total)):
                await c.worker.create(worker(f"page-{i}"))
            total = (await c.worker.count(svc.CountCondition())).total
            default = [w async for w in c.worker.find_list(svc.FindListRequest())]
            most = [w async for w in c.worker.find_list(svc.FindListRequest(limit=1000))]
            return total, len(default), len(most)

    total, default, most = run(scenario())
    assert default == 100 and most == min(total, 1000)


@pytest.mark.parametrize("limit", [1001, -1])
@pytest.mark.parametrize("service", ["runner", "worker", "job", "job_result"])
def test_a_limit_out_of_range_is_refused(server: ServerProcess, service: str, limit: int) -> None:
    async def listed(c: Client) -> list[object]:
        return [item async for item in getattr(c, service).find_list(svc.FindListRequest(limit=limit))]

    invalid(server.port, listed, "limit")


def test_restore_find_all_refuses_a_limit_out_of_range(server: ServerProcess) -> None:
    async def listed(c: Client) -> list[data.Job]:
        return [job async for job in c.job_restore.find_all(svc.JobRestoreRequest(limit=1001))]

    invalid(server.port, listed, "limit")


@pytest.fixture(scope="module")
def small_limit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("small-limit"), {"GRPC_MAX_MESSAGE_BYTES": "65536"}).start()
    yield server
    assert server.stop() == 0, server.log()[-5000:]


def test_the_limit_is_the_configured_one(small_limit_server: ServerProcess) -> None:
    reply = send_raw(small_limit_server.port, FIND_BY_NAME, RawBody(message=record(1, LEN, b"n" * 65536)))
    assert reply.status == Status.RESOURCE_EXHAUSTED and "(65536 bytes" in reply.message, (reply.status, reply.message)
