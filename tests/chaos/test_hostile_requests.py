"""Hostile requests (issue 10, scenario 6): random, truncated and hostile bytes sent to every
method the server serves. The server must never crash or hang, and must answer each call with OK
or a refusal that names what was wrong — never INTERNAL or UNKNOWN.

One Standalone server serves every test here but the round trip (which needs a plugin and, for
MySQL, Scalable storage). Examples are derandomized, so CI runs the same ones every time.
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import Client, ServerProcess, connect, run
from tests.chaos.protowire import LEN, MB, Encoder, Pools, descriptor_of, record, varint
from tests.chaos.raw_grpc import Method, RawBody, Reply, call_raw, raw_channel, served_methods
from tests.scalable.services import scalable_env

pytestmark = pytest.mark.timeout(600)

METHODS = served_methods()
BY_PATH = {m.path: m for m in METHODS}
# Refusals a hostile request may get; anything else (INTERNAL, UNKNOWN, ...) is a server bug.
REFUSALS = {Status.INVALID_ARGUMENT, Status.NOT_FOUND, Status.ALREADY_EXISTS, Status.OUT_OF_RANGE,
            Status.RESOURCE_EXHAUSTED}
# Methods that wait by design (a DIRECT job's result, a result to listen for, a stream of them):
# their client deadline passing, or the server's DEADLINE_EXCEEDED, is an answer, not a hang.
WAITING = {
    "/jobworkerp.service.JobService/Enqueue",
    "/jobworkerp.service.JobResultService/Listen",
    "/jobworkerp.service.JobResultService/ListenStreamByWorker",
    "/grpc.health.v1.Health/Watch",
}
WAIT_S = 0.5  # client deadline of a call to a waiting method: how long to listen, not a bound
HANG_S = 60.0  # client deadline of any other call: only a server that stopped answering reaches it
HUGE = 10 * MB

FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))

COMMAND = data.RunnerId(value=1)
ECHO = bytes(runner_pb.CommandRunnerSettings(name="echo"))
CAT = bytes(runner_pb.CommandRunnerSettings(name="cat"))
ECHO_ARGS = (bytes(runner_pb.CommandArgs(args=["hello"])), bytes(runner_pb.CommandArgs(args=["nul\x00", "é", "-n"])),
             b"")
STORE_ALL = {"store_success": True, "store_failure": True}


@dataclass
class Target:
    """The server under fuzz and what exists on it."""

    server: ServerProcess
    workers: dict[str, int]
    pools: Pools

    @property
    def port(self) -> int:
        return self.server.port


def echo_worker(name: str, response_type: data.ResponseType, **kwargs: Any) -> data.WorkerData:
    return data.WorkerData(name=name, runner_id=COMMAND, runner_settings=ECHO, response_type=response_type,
                           **STORE_ALL, **kwargs)


async def _populate(c: Client) -> tuple[dict[str, int], list[int]]:
    """Workers of each response type (and a victim for updates), each with a finished job."""
    specs = {
        "echo-none": echo_worker("echo-none", data.ResponseType.NO_RESULT),
        "echo-direct": echo_worker("echo-direct", data.ResponseType.DIRECT),
        "echo-listen": echo_worker("echo-listen", data.ResponseType.LISTEN_AFTER),
        "victim": echo_worker("victim", data.ResponseType.NO_RESULT),
    }
    workers = {name: (await c.worker.create(wd)).id.value for name, wd in specs.items()}
    ids: list[int] = []
    for name in ("echo-none", "echo-direct", "echo-listen"):
        reply = await c.job.enqueue(svc.JobRequest(worker_name=name, args=ECHO_ARGS[0]), timeout=HANG_S)
        ids.append(reply.id.value)
        if name == "echo-listen":
            await c.job_result.listen(svc.ListenRequest(job_id=reply.id, worker_name=name), timeout=HANG_S)
    results = [r async for r in c.job_result.find_list(svc.FindListRequest())]
    return workers, ids + [r.id.value for r in results]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    server = ServerProcess(tmp_path_factory.mktemp("hostile"), {"WORKER_DEFAULT_CONCURRENCY": "2"}).start()

    async def populate() -> tuple[dict[str, int], list[int]]:
        async with connect(server.port) as c:
            return await _populate(c)

    workers, other_ids = run(populate())
    pools = Pools(ids=tuple(workers.values()) + tuple(other_ids), names=tuple(workers), settings=(ECHO,),
                  args=ECHO_ARGS)
    yield Target(server, workers, pools)
    assert server.stop() == 0, server.log()[-5000:]


def call(port: int, method: Method, body: RawBody) -> Reply:
    async def once() -> Reply:
        channel = raw_channel(port)
        try:
            return await call_raw(channel, method, body, WAIT_S if method.path in WAITING else HANG_S)
        finally:
            channel.close()

    return run(once(), timeout=HANG_S + 30)


def check(target: Target, method: Method, body: RawBody, reply: Reply) -> None:
    """The answer is OK or a refusal with a message; a waiting method may also run out of time."""
    where = f"{method.path} with {body.describe()}"
    assert target.server.alive(), f"the server died after {where}:\n{target.server.log()[-5000:]}"
    if reply.status is None:
        assert reply.waited_out and method.path in WAITING, f"{where}: no answer ({reply.broken})"
        return
    if reply.status == Status.DEADLINE_EXCEEDED and method.path in WAITING:
        return
    assert reply.status == Status.OK or reply.status in REFUSALS, f"{where}: {reply.status.name} {reply.message!r}"
    assert reply.status == Status.OK or reply.message.strip(), f"{where}: {reply.status.name} without a message"


def send(target: Target, method: Method, body: RawBody) -> Reply:
    reply = call(target.port, method, body)
    check(target, method, body, reply)
    return reply


def test_every_method_of_every_service_is_fuzzed() -> None:
    """The method list comes from the server's own service objects; it must cover every method
    the committed descriptors declare, and the waiting methods must still exist."""
    from jobworkerp.descriptors import descriptor_pool

    declared: set[str] = set()
    for proto in ("common", "job", "job_result", "runner", "worker"):
        for service in descriptor_pool().FindFileByName(f"jobworkerp/service/{proto}.proto").services_by_name.values():
            declared |= {f"/{service.full_name}/{m.name}" for m in service.methods}
    assert len(declared) == 27
    assert declared <= BY_PATH.keys()
    assert {"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"} <= BY_PATH.keys()
    assert WAITING <= BY_PATH.keys()


# --- (a) bytes that are not a request ------------------------------------------------------------

def _frames(body: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """A DATA payload around `body`: a length prefix that lies, the compressed flag, or none at all."""
    return st.one_of(
        st.tuples(body, st.integers(0, 2**32 - 1)).map(lambda bl: b"\x00" + bl[1].to_bytes(4, "big") + bl[0]),
        body.map(lambda b: b"\x01" + len(b).to_bytes(4, "big") + b),
        st.binary(max_size=4),
        body,
    )


@st.composite
def _truncated(draw: st.DrawFn, encoder: Encoder, method: Method) -> bytes:
    whole = draw(encoder.request(method.request_type))
    return whole[: draw(st.integers(0, max(len(whole) - 1, 0)))]


def raw_bodies(target: Target, method: Method) -> st.SearchStrategy[RawBody]:
    return st.one_of(
        st.binary(max_size=64).map(lambda b: RawBody(message=b)),
        _truncated(Encoder(target.pools, decodable=True), method).map(lambda b: RawBody(message=b)),
        _frames(st.binary(max_size=32)).map(lambda b: RawBody(frame=b)),
        st.just(RawBody()),
    )


@settings(FUZZ, max_examples=150)
@given(fuzz=st.data())
def test_random_and_truncated_bytes_are_refused_as_invalid_argument(target: Target, fuzz: st.DataObject) -> None:
    method = fuzz.draw(st.sampled_from(METHODS))
    body = fuzz.draw(raw_bodies(target, method))
    reply = send(target, method, body)
    if body.frame is None and body.message is None and not method.cardinality.client_streaming:
        assert reply.status == Status.INVALID_ARGUMENT, f"{method.path} without a message: {reply.status}"


def test_undecodable_bytes_name_the_message_type(target: Target) -> None:
    reply = send(target, BY_PATH["/jobworkerp.service.WorkerService/Create"], RawBody(message=b"\x0a\x05ab"))
    assert reply.status == Status.INVALID_ARGUMENT
    assert "jobworkerp.data.WorkerData" in reply.message, reply.message


# --- (b) well-formed enough to reach validation, with hostile values ---------------------------

def _names(target: Target) -> st.SearchStrategy[bytes]:
    return st.sampled_from([n.encode() for n in target.pools.names])


def _encoder(target: Target, fuzz: st.DataObject) -> Encoder:
    """Mostly messages that decode, so their hostile values reach validation; now and then not."""
    return Encoder(target.pools, decodable=fuzz.draw(st.sampled_from([True, True, True, False])))


@settings(FUZZ, max_examples=60)
@given(fuzz=st.data())
def test_hostile_enqueues_to_existing_workers(target: Target, fuzz: st.DataObject) -> None:
    """uniq_key of 64 KB, with NULs or not UTF-8; unknown priorities; negative and overflowing
    run_after_time and timeout; args of every kind."""
    body = fuzz.draw(_encoder(target, fuzz).request(svc.JobRequest, worker_name=_names(target), worker_id=None))
    send(target, BY_PATH["/jobworkerp.service.JobService/Enqueue"], RawBody(message=body))


RUNNER_1 = record(1, 0, varint(1))  # RunnerId{value: 1}: COMMAND
NAMES = st.one_of(st.text(min_size=1, max_size=24), st.sampled_from(["n" * 129, "k" * 64 * 1024, "nul\x00name"]))
RESPONSE_TYPES = st.sampled_from([1, 1, 0, 2]).map(varint)  # DIRECT twice: its wait is computed from the policy
RETRY_TYPES = st.sampled_from([int(t) for t in data.RetryType]).map(varint)
MAX_RETRIES = st.sampled_from([0, 1, 3, 1000, 2**31, 2**32 - 1]).map(varint)
BASES = st.sampled_from([1.0, 1.5, 2.0, 10.0, 1e30, 3.4e38, math.inf, 0.5, math.nan]).map(
    lambda f: struct.pack("<f", f))
FLAGS = st.sampled_from([varint(1), varint(1), varint(0)])


def _definition(encoder: Encoder, depth: int = 0) -> st.SearchStrategy[bytes]:
    """A COMMAND echo worker with a name and a retry policy, hostile in everything else; no
    channel (a Standalone server refuses channels it does not serve before anything else)."""
    policy = encoder.message(descriptor_of(data.RetryPolicy), depth + 1, force={
        "type": RETRY_TYPES, "basis": BASES, "max_retry": MAX_RETRIES})
    return encoder.message(descriptor_of(data.WorkerData), depth, force={
        "name": NAMES.map(str.encode), "runner_id": st.just(RUNNER_1), "runner_settings": st.just(ECHO),
        "retry_policy": policy, "response_type": RESPONSE_TYPES, "channel": None, "store_success": FLAGS,
        "store_failure": FLAGS})


@settings(FUZZ, max_examples=60)
@given(fuzz=st.data())
def test_hostile_worker_definitions(target: Target, fuzz: st.DataObject) -> None:
    """Names, numbers, retry policies and next_workers (existing, missing, negative, itself) are
    what gets judged. A worker that is accepted gets a hostile job, then goes; Update works on a
    victim worker."""
    encoder = _encoder(target, fuzz)
    if fuzz.draw(st.booleans()):
        victim = st.just(record(1, 0, varint(target.workers["victim"])))
        update = fuzz.draw(encoder.request(data.Worker, id=victim, data=_definition(encoder, depth=1)))
        send(target, BY_PATH["/jobworkerp.service.WorkerService/Update"], RawBody(message=update))
        return
    definition = fuzz.draw(_definition(encoder))
    # Drawn before the server answers, so every example draws the same way whatever it answers.
    job = fuzz.draw(encoder.request(svc.JobRequest, worker_id=None, worker_name=None))
    reply = send(target, BY_PATH["/jobworkerp.service.WorkerService/Create"], RawBody(message=definition))
    if reply.status == Status.OK:
        worker_id = bytes(svc.CreateWorkerResponse.parse(reply.replies[0]).id)
        to_it = RawBody(message=record(1, LEN, worker_id) + job)
        send(target, BY_PATH["/jobworkerp.service.JobService/Enqueue"], to_it)
        send(target, BY_PATH["/jobworkerp.service.WorkerService/Delete"], RawBody(message=worker_id))


# --- next_workers: a deep chain, a missing worker, a cycle (refused) ----------------------------------------

def self_feeding_args(tmp: Path) -> bytes:
    """Args for `cat FILE` where FILE holds these very args: every job's output is valid args for
    the next one, so a chain of such workers goes on for as long as the chain does."""
    path = tmp / "args.bin"
    args = bytes(runner_pb.CommandArgs(args=[str(path)]))
    path.write_bytes(args)
    return args


def cat_worker(name: str, next_workers: list[int]) -> data.WorkerData:
    return data.WorkerData(name=name, runner_id=COMMAND, runner_settings=CAT, store_success=True,
                           next_workers=[data.WorkerId(value=n) for n in next_workers])


async def _results_of(c: Client, worker_id: int) -> list[data.JobResult]:
    return [r async for r in c.job_result.find_list(svc.FindListRequest(), timeout=HANG_S)
            if r.data.worker_id.value == worker_id]


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `condition` until it holds (HANG_S * 4 only bounds a failing run)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + HANG_S * 4
    while not await condition():
        assert loop.time() < give_up, f"still waiting for {what}"
        await asyncio.sleep(0.1)


def test_a_deep_chain_ending_at_a_missing_worker_runs_to_its_end(target: Target, tmp_path: Path) -> None:
    """16 links, within the chain depth limit (usecase/next_workers.py); the missing worker at its
    end starts no job."""
    depth, missing = 16, 10**15
    args = self_feeding_args(tmp_path)

    async def scenario() -> list[data.JobResult]:
        async with connect(target.port) as c:
            nxt = missing
            for i in reversed(range(depth)):
                nxt = (await c.worker.create(cat_worker(f"deep-{i}", [nxt]))).id.value
            await c.job.enqueue(svc.JobRequest(worker_id=data.WorkerId(value=nxt), args=args), timeout=HANG_S)
            last = (await c.worker.find_by_name(svc.WorkerNameRequest(name=f"deep-{depth - 1}"))).data.id.value
            await _until(lambda: _has_results(c, last), "the last link's result")
            return await _results_of(c, last)

    [result] = run(scenario(), timeout=300)
    assert result.data.status == data.ResultStatus.SUCCESS and result.data.output.items == [args]


async def _has_results(c: Client, worker_id: int) -> bool:
    return bool(await _results_of(c, worker_id))


def test_a_cycle_is_refused(target: Target) -> None:
    """A worker chained to itself was accepted and ran until deleted; named twice, its jobs
    doubled at every turn (242 live jobs became 1142 in 8 s). Now a cycle is refused, naming the
    field, and the worker keeps the definition it had."""

    async def scenario() -> tuple[Status, str, data.Worker | None]:
        async with connect(target.port) as c:
            loop = (await c.worker.create(cat_worker("cycle", []))).id
            try:
                await c.worker.update(data.Worker(id=loop, data=cat_worker("cycle", [loop.value, loop.value])))
            except GRPCError as e:
                refused = (e.status, e.message or "")
            else:
                raise AssertionError("a worker naming itself was accepted")
            return (*refused, (await c.worker.find(loop, timeout=HANG_S)).data)

    status, message, stored = run(scenario(), timeout=300)
    assert status == Status.INVALID_ARGUMENT and message.startswith("next_workers[0]"), (status, message)
    assert stored is not None and list(stored.data.next_workers) == []


# --- 10 MB values ------------------------------------------------------------------------------

TO_ECHO = record(2, LEN, b"echo-none")  # JobRequest.worker_name
WITH_RUNNER = record(2, LEN, RUNNER_1)  # WorkerData.runner_id


@pytest.mark.parametrize(("path", "field_numbers", "prefix"), [
    pytest.param("/jobworkerp.service.WorkerService/Create", (1,), WITH_RUNNER + record(3, LEN, ECHO),
                 id="Create.name"),
    pytest.param("/jobworkerp.service.WorkerService/Create", (3, 1), record(1, LEN, b"huge") + WITH_RUNNER,
                 id="Create.runner_settings.name"),
    pytest.param("/jobworkerp.service.JobService/Enqueue", (4,), TO_ECHO, id="Enqueue.uniq_key"),
    pytest.param("/jobworkerp.service.JobService/Enqueue", (3, 1), TO_ECHO, id="Enqueue.args.args"),
    pytest.param("/jobworkerp.service.WorkerService/FindByName", (1,), b"", id="FindByName.name"),
    pytest.param("/jobworkerp.service.WorkerService/Update", (2, 6), b"", id="Update.data.channel"),
])
@pytest.mark.parametrize("valid_utf8", [True, False], ids=["utf8", "not-utf8"])
def test_ten_megabyte_values(target: Target, path: str, field_numbers: tuple[int, ...], prefix: bytes,
                             valid_utf8: bool) -> None:
    value = (b"x" if valid_utf8 else b"\xff") * HUGE
    for number in reversed(field_numbers):
        value = record(number, LEN, value)
    send(target, BY_PATH[path], RawBody(message=prefix + value))


# --- what this suite found ------------------------------------------------------------------------

def refusal(target: Target, path: str, message: bytes) -> str:
    """The INVALID_ARGUMENT message `message` gets from `path`."""
    reply = send(target, BY_PATH[path], RawBody(message=message))
    assert reply.status == Status.INVALID_ARGUMENT, (reply.status, reply.message)
    return reply.message


def policy_worker(name: str, policy: data.RetryPolicy) -> bytes:
    return bytes(echo_worker(name, data.ResponseType.NO_RESULT, retry_policy=policy))


@pytest.mark.parametrize(("policy", "field"), [
    # Every failed attempt failed again while placing its retry (NaN delay) and ran again, for ever.
    (data.RetryPolicy(type=data.RetryType.EXPONENTIAL, interval=0, max_retry=3, basis=math.inf), "retry_policy.basis"),
    # The same at retry 1024 (2.0**1024 overflows), some 17 minutes into retries capped at a second.
    (data.RetryPolicy(type=data.RetryType.EXPONENTIAL, interval=1, max_interval=1000, max_retry=2000, basis=2.0),
     "retry_policy.max_retry"),
])
def test_retry_policies_whose_delays_cannot_be_computed_are_refused(target: Target, policy: data.RetryPolicy,
                                                                    field: str) -> None:
    message = refusal(target, "/jobworkerp.service.WorkerService/Create", policy_worker(f"policy-{field}", policy))
    assert message.startswith(field), message


def test_a_direct_job_of_a_worker_allowing_four_billion_retries_is_answered(target: Target) -> None:
    """The DIRECT wait was computed by adding up every retry's delay, one by one: 2**32 - 1 of
    them held the server's event loop, and so every other call, for minutes."""
    policy = data.RetryPolicy(type=data.RetryType.CONSTANT, interval=1000, max_retry=2**32 - 1, basis=2.0)

    async def scenario() -> svc.CreateJobResponse:
        async with connect(target.port) as c:
            await c.worker.create(echo_worker("forever", data.ResponseType.DIRECT, retry_policy=policy))
            return await c.job.enqueue(svc.JobRequest(worker_name="forever", args=ECHO_ARGS[0]), timeout=HANG_S)

    assert run(scenario()).result.data.output.items == [b"hello\n"]


@pytest.mark.parametrize(("path", "message", "field"), [
    ("/jobworkerp.service.JobService/Enqueue", svc.JobRequest(worker_name="echo-none", uniq_key="k" * 129),
     "uniq_key"),
    ("/jobworkerp.service.WorkerService/Create", echo_worker("n" * 129, data.ResponseType.NO_RESULT), "name"),
    ("/jobworkerp.service.WorkerService/Create", echo_worker("wide", data.ResponseType.NO_RESULT, channel="c" * 33),
     "channel"),
])
def test_values_longer_than_their_mysql_columns_are_refused_in_every_mode(
        target: Target, path: str, message: data.WorkerData | svc.JobRequest, field: str) -> None:
    """Standalone stored them; Scalable refused them — a uniq_key only when a row or a result was
    written, so a NORMAL job with a 64 KB key failed storing its result and ran again, for ever."""
    refused = refusal(target, path, bytes(message))
    assert refused.startswith(field), refused


def test_health_of_an_unknown_service_is_not_found_and_says_so(target: Target) -> None:
    from grpclib.health.v1.health_pb2 import HealthCheckRequest

    body = HealthCheckRequest(service="no.such.Service").SerializeToString()
    reply = send(target, BY_PATH["/grpc.health.v1.Health/Check"], RawBody(message=body))
    assert reply.status == Status.NOT_FOUND and "no.such.Service" in reply.message


# --- everything, everywhere ----------------------------------------------------------------------

@settings(FUZZ, max_examples=200)
@given(fuzz=st.data())
def test_hostile_messages_to_every_method(target: Target, fuzz: st.DataObject) -> None:
    """Unknown enum values, negative and overflowing numbers, varints past ten bytes, invalid
    UTF-8, 64 KB strings, wrong wire types and unknown fields, in every request type."""
    method = fuzz.draw(st.sampled_from(METHODS))
    send(target, method, RawBody(message=fuzz.draw(Encoder(target.pools).request(method.request_type))))


def test_the_server_survived_and_still_serves(target: Target) -> None:
    async def scenario() -> svc.CreateJobResponse:
        async with connect(target.port) as c:
            await c.worker.count(svc.CountCondition(), timeout=HANG_S)
            await c.worker.create(echo_worker("after-the-storm", data.ResponseType.DIRECT))
            return await c.job.enqueue(svc.JobRequest(worker_name="after-the-storm", args=ECHO_ARGS[0]),
                                       timeout=HANG_S)

    assert target.server.alive()
    reply = run(scenario())
    assert reply.result.data.output.items == [b"hello\n"]
    # Nothing failed inside the server either: no request handler or job path logged an error.
    errors = [line for line in target.server.log().splitlines() if " ERROR " in line or " CRITICAL " in line]
    assert not errors, "\n".join(errors[:20])


# --- any bytes through a job ------------------------------------------------------------------------

PLUGINS = Path(__file__).resolve().parent / "plugins"
# One job per payload costs seconds on MySQL + Redis at 4 MB, so the big one carries the rest:
# invalid UTF-8 and NULs at its start, middle and end.
ODD = b"\xff\xfe\x00\xc3\x28\x00\xed\xa0\x80\x00"
FILLER = bytes(range(256)) * (2 * MB // 256)
PAYLOADS = {"4 MB, not UTF-8, with NULs": ODD + FILLER + ODD + FILLER + ODD, "one NUL": b"\x00"}


@pytest.fixture(scope="module", params=["standalone", "scalable"])
def byte_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with the raw_echo plugin, on SQLite (Standalone) or MySQL + Redis (Scalable)."""
    env = {"PLUGINS_RUNNER_DIR": str(PLUGINS), "WORKER_DEFAULT_CONCURRENCY": "2"}
    workdir = tmp_path_factory.mktemp(f"bytes-{request.param}")
    if request.param == "standalone":
        server = ServerProcess(workdir, env).start()
        yield server
        assert server.stop() == 0, server.log()[-5000:]
        return
    with scalable_env() as scalable:
        server = ServerProcess(workdir, {**scalable, **env}).start()
        yield server
        assert server.stop() == 0, server.log()[-5000:]


async def _raw_echo_id(c: Client) -> data.RunnerId:
    for runner in [r async for r in c.runner.find_list(svc.FindListRequest())]:
        if runner.data.name == "raw_echo":
            return runner.id
    raise AssertionError("the raw_echo plugin is not loaded")


def test_any_bytes_round_trip_through_a_job(byte_server: ServerProcess) -> None:
    """Args and output of any bytes come back unchanged from the queue, the job row and the
    stored result."""
    async def scenario() -> dict[str, tuple[bytes, list[data.JobResult]]]:
        async with connect(byte_server.port) as c:
            runner_id = await _raw_echo_id(c)
            await c.worker.create(data.WorkerData(
                name="bytes", runner_id=runner_id, queue_type=data.QueueType.WITH_BACKUP,
                response_type=data.ResponseType.LISTEN_AFTER, **STORE_ALL))
            seen = {}
            for label, payload in PAYLOADS.items():
                job_id = (await c.job.enqueue(svc.JobRequest(worker_name="bytes", args=payload), timeout=HANG_S)).id
                listened = await c.job_result.listen(svc.ListenRequest(job_id=job_id, worker_name="bytes"),
                                                     timeout=HANG_S)
                stored = [r async for r in c.job_result.find_list_by_job_id(
                    svc.FindListByJobIdRequest(job_id=job_id), timeout=HANG_S)]
                seen[label] = (payload, [listened, *stored])
                seen[f"{label} (row)"] = (payload, [await _scheduled_copy(c, payload)])
            return seen

    for label, (payload, results) in run(scenario(), timeout=300).items():
        if label.endswith("(row)"):
            [job] = results
            assert job.data.args == payload, label
            continue
        assert len(results) == 2, label
        for result in results:
            assert result.data.status == data.ResultStatus.SUCCESS, (label, result.data.output)
            assert result.data.args == payload, label
            assert result.data.output.items == [payload], label


async def _scheduled_copy(c: Client, payload: bytes) -> data.Job:
    """The job as its row holds it: scheduled an hour ahead, found, then deleted."""
    job_id = (await c.job.enqueue(svc.JobRequest(worker_name="bytes", args=payload, run_after_time=_in_an_hour()),
                                  timeout=HANG_S)).id
    found = (await c.job.find(job_id, timeout=HANG_S)).data
    assert (await c.job.delete(job_id, timeout=HANG_S)).is_success
    assert found is not None
    return found


def _in_an_hour() -> int:
    import time

    return int(time.time() * 1000) + 3_600_000
