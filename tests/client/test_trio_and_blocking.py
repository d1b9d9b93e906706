"""The client from a trio program (trio-asyncio) and from plain synchronous code (BlockingClient)."""

from __future__ import annotations

import threading

import pytest
import trio
import trio_asyncio
from shapes import Box, Point, add, grow
from trio_asyncio import aio_as_trio

from jobworkerp.client import BlockingClient, BlockingJobHandle, Client, ClientError, JobFailed, WorkerNotFound

pytestmark = pytest.mark.timeout(180)
WAIT_S = 60.0


async def test_from_trio(address: str) -> None:  # a trio test (pytest-trio's trio_mode)
    async with trio_asyncio.open_loop():
        async with aio_as_trio(Client(address)) as client:
            assert await aio_as_trio(client.call)(add, 1, 2) == 3
            await aio_as_trio(client.create_worker)("trio-later", "COMMAND", {"name": "echo"},
                                                   response_type="LISTEN_AFTER")
            handle = await aio_as_trio(client.enqueue)("trio-later", {"args": ["t"]})
            assert (await aio_as_trio(handle.result)(WAIT_S)).output == [b"t\n"]
            with pytest.raises(WorkerNotFound):
                await aio_as_trio(client.run)("no-such-worker")

            seen: list[bytes] = []

            async def listen(cancel: trio.CancelScope) -> None:
                async for result in aio_as_trio(client.results("trio-later")):
                    seen.append(result.output[0])
                    cancel.cancel()

            with trio.move_on_after(WAIT_S) as scope:  # a bound on the whole wait, never asserted
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(listen, nursery.cancel_scope)
                    while True:  # the stream sees jobs that end once the server has subscribed it
                        await aio_as_trio(client.enqueue)("trio-later", {"args": ["streamed"]})
                        await trio.sleep(0.2)
            assert not scope.cancelled_caught and seen == [b"streamed\n"]


def test_blocking_client_from_sync_code(address: str) -> None:
    with BlockingClient(address) as client:
        assert client.call(grow, Box(Point(0, 0), 1, 1)) == grow(Box(Point(0, 0), 1, 1))
        assert client.runner("COMMAND").type == "COMMAND"
        worker = client.create_worker("sync-later", "COMMAND", {"name": "echo"}, response_type="LISTEN_AFTER")
        assert client.get_worker("sync-later") == worker
        assert client.update_worker(worker, store_success=True).store_success is True
        handle = client.enqueue(worker, {"args": ["one"]})
        assert isinstance(handle, BlockingJobHandle)
        assert handle.result(WAIT_S).output == [b"one\n"] and handle.status() is None and handle.cancel() is False
        many = client.enqueue_many(worker, [{"args": ["a"]}, {"args": ["b"]}])
        assert [h.result(WAIT_S).output for h in many if isinstance(h, BlockingJobHandle)] == [[b"a\n"], [b"b\n"]]

        client.create_worker("sync-false", "COMMAND", {"name": "false"})
        with pytest.raises(JobFailed):
            client.run("sync-false", {"args": []})

        # The stream sees jobs that end after the server has it, which cannot be observed: another
        # thread keeps enqueuing (a BlockingClient may be used from several threads) until one arrives.
        done = threading.Event()

        def keep_enqueuing() -> None:
            while not done.wait(0.2):
                client.enqueue(worker, {"args": ["streamed"]})

        feeder = threading.Thread(target=keep_enqueuing)
        feeder.start()
        try:
            stream = client.results(worker)
            assert next(stream).output == [b"streamed\n"]
            stream.close()  # ends the server stream
        finally:
            done.set()
            feeder.join()
        assert client.delete_worker(worker) is True


def test_blocking_client_works_where_an_event_loop_already_runs(address: str) -> None:
    """As in a notebook: the calling thread runs asyncio, and calls still block and answer."""
    import asyncio

    async def inside_a_loop() -> int:
        with BlockingClient(address) as client:
            return client.call(add, 20, 22)

    assert asyncio.run(inside_a_loop()) == 42


def test_blocking_client_must_be_opened() -> None:
    client = BlockingClient("127.0.0.1:1")
    with pytest.raises(ClientError, match="not open"):
        client.runners()
    before = threading.active_count()
    client.open()
    client.close()
    assert threading.active_count() == before  # its loop thread is gone
