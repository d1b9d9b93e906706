"""GRPC_MAX_CONCURRENT_STREAMS against a real server (front/stream_limit.py): the server advertises
it, a client that ignores it is refused past it, and a grpclib client queues its calls at it, so
more concurrent calls than the cap still all complete."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import runner as runner_pb
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess, connect, run

pytestmark = pytest.mark.timeout(120)
CAP = 3
HANG_S = 60  # hang guard only


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("streams"), {"GRPC_MAX_CONCURRENT_STREAMS": str(CAP)}).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def _listen_headers(port: int) -> list[tuple[str, str]]:
    return [(":method", "POST"), (":scheme", "http"), (":authority", f"127.0.0.1:{port}"),
            (":path", "/jobworkerp.service.JobResultService/ListenStreamByWorker"),
            ("content-type", "application/grpc"), ("te", "trailers")]


def _events(sock: socket.socket, conn: h2.connection.H2Connection) -> list[h2.events.Event]:
    chunk = sock.recv(65536)
    events = conn.receive_data(chunk) if chunk else [h2.events.ConnectionTerminated()]
    sock.sendall(conn.data_to_send())
    return events


def test_the_cap_is_advertised_and_a_client_past_it_is_refused(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=HANG_S) as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        advertised = None
        while advertised != CAP:  # the server's SETTINGS (h2's 100 first, then the cap), each acked
            for event in _events(sock, conn):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    changed = event.changed_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
                    advertised = changed.new_value if changed else advertised
                assert not isinstance(event, h2.events.ConnectionTerminated)
        # A client that ignores the cap (here: forgets it) opens one stream more than it allows.
        conn.remote_settings = h2.settings.Settings(client=False)
        for _ in range(CAP + 1):
            conn.send_headers(conn.get_next_available_stream_id(), _listen_headers(server.port))
        sock.sendall(conn.data_to_send())
        refused = None
        while refused is None:
            for event in _events(sock, conn):
                if isinstance(event, (h2.events.ConnectionTerminated, h2.events.StreamReset)):
                    refused = event
        assert isinstance(refused, h2.events.ConnectionTerminated) or refused.stream_id == 2 * CAP + 1, refused


def test_more_calls_than_the_cap_on_one_connection_all_complete(server: ServerProcess) -> None:
    """grpclib waits for a free stream: 4 x CAP concurrent calls are served, CAP at a time."""
    async def scenario() -> list[int]:
        async with connect(server.port) as c:
            await c.worker.create(data.WorkerData(name="w", runner_id=data.RunnerId(value=1),
                                                  runner_settings=bytes(runner_pb.CommandRunnerSettings(name="true"))))

            async def find() -> int:
                return (await c.worker.find_by_name(svc.WorkerNameRequest(name="w"), timeout=HANG_S)).data.id.value

            return await asyncio.gather(*(find() for _ in range(4 * CAP)))

    ids = run(scenario(), timeout=HANG_S)
    assert len(ids) == 4 * CAP and len(set(ids)) == 1


def _worker(name: str) -> data.WorkerData:
    return data.WorkerData(name=name, runner_id=data.RunnerId(value=1),
                           runner_settings=bytes(runner_pb.CommandRunnerSettings(name="true")))


def test_a_caller_that_keeps_calling_does_not_starve_one_that_waits(server: ServerProcess) -> None:
    """CAP callers call again as soon as each call ends; one more caller then makes one call.
    grpclib alone wakes every waiting call when a stream closes, after the caller that just
    closed it has already taken it again, so the late call waited while the others went on.
    The client's channel (client/fair_channel.py) queues calls in arrival order: the late call
    takes the next stream that closes."""
    rounds = 30
    tries = 4  # without the queue a try passes now and then by luck; all four, hardly ever

    async def scenario() -> list[tuple[int, int]]:
        async with connect(server.port) as c:
            await c.worker.create(_worker("fair"))

            async def find() -> None:
                await c.worker.find_by_name(svc.WorkerNameRequest(name="fair"), timeout=HANG_S)

            async def one_try() -> tuple[int, int]:
                finished: list[str] = []
                running = [asyncio.Event() for _ in range(CAP)]
                arrived = 0  # calls finished when the late call was made

                async def keeps_calling(i: int) -> None:
                    for _ in range(rounds):
                        await find()
                        finished.append("busy")
                        running[i].set()

                async def one_call() -> None:
                    nonlocal arrived
                    await asyncio.gather(*(e.wait() for e in running))
                    arrived = len(finished)
                    await find()
                    finished.append("late")

                await asyncio.gather(*(keeps_calling(i) for i in range(CAP)), one_call())
                return arrived, finished.index("late")

            return [await one_try() for _ in range(tries)]

    # The late call arrives once every busy caller has finished a call, so all CAP streams are
    # taken; it gets the next one that closes, and each busy caller finishes at most the call it
    # has open before it queues behind the late one: about CAP calls end before it does, counted
    # from its arrival (how many ended before that depends on how far apart the busy callers'
    # first calls ended). Without the queue: from CAP to 60 calls, mostly more than 2 x CAP.
    for arrived, late in run(scenario(), timeout=HANG_S):
        assert late - arrived <= 2 * CAP, (arrived, late)


def test_calls_that_give_up_waiting_for_a_stream_leave_none_taken(server: ServerProcess) -> None:
    """With every stream held, a call whose deadline passes while it waits fails with a deadline
    error and a cancelled one is cancelled; afterwards the connection still runs CAP calls at
    once and more than CAP calls all complete."""
    async def scenario() -> tuple[int, list[int]]:
        async with connect(server.port) as c:
            worker_id = (await c.worker.create(_worker("held"))).id
            await c.worker.find_by_name(svc.WorkerNameRequest(name="held"))  # connected: the cap is known

            async def hold() -> None:
                async for _ in c.job_result.listen_stream_by_worker(
                        svc.ListenStreamByWorkerRequest(worker_id=worker_id)):
                    pass

            holders = [asyncio.ensure_future(hold()) for _ in range(CAP)]
            await asyncio.sleep(0)  # each holder took its stream's place in its first step
            expired = 0
            for _ in range(3):
                try:
                    await c.worker.find_by_name(svc.WorkerNameRequest(name="held"), timeout=0.05)
                except TimeoutError:
                    expired += 1
            cancelled = asyncio.ensure_future(c.worker.find_by_name(svc.WorkerNameRequest(name="held")))
            await asyncio.sleep(0)
            cancelled.cancel()
            await asyncio.gather(cancelled, return_exceptions=True)
            for h in holders:
                h.cancel()
            await asyncio.gather(*holders, return_exceptions=True)

            async def find() -> int:
                return (await c.worker.find_by_name(svc.WorkerNameRequest(name="held"), timeout=HANG_S)).data.id.value

            return expired, await asyncio.gather(*(find() for _ in range(4 * CAP)))

    expired, ids = run(scenario(), timeout=HANG_S)
    assert expired == 3
    assert len(ids) == 4 * CAP and len(set(ids)) == 1
