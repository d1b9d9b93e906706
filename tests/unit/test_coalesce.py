"""CoalescingTransport (front/coalesce.py): what is written in one event-loop turn goes out as one
write, in order; large writes are not held back; close sends what is pending, abort drops it.
Against a real socket pair, and through a real server for many calls on one connection."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from jobworkerp.front.coalesce import FLUSH_AT, CoalescingTransport


class _Recorder(asyncio.Transport):
    """Records each write that reaches the (real) transport below."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self.inner = transport
        self.writes: list[bytes] = []

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        self.inner.write(data)

    def close(self) -> None:
        self.inner.close()

    def abort(self) -> None:
        self.inner.abort()

    def is_closing(self) -> bool:
        return self.inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.inner.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return self.inner.get_write_buffer_size()


async def _pair() -> tuple[_Recorder, CoalescingTransport, socket.socket]:
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    recorder = _Recorder(transport)  # type: ignore[arg-type]
    return recorder, CoalescingTransport(recorder, loop), theirs


def _read_all(sock: socket.socket, n: int) -> bytes:
    sock.settimeout(10)
    got = b""
    while len(got) < n:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    return got


def test_one_turns_writes_go_out_as_one_in_order() -> None:
    async def scenario() -> None:
        recorder, coalescing, peer = await _pair()
        coalescing.write(b"headers|")
        coalescing.write(b"")
        coalescing.write(bytearray(b"data|"))
        coalescing.write(b"trailers")
        assert recorder.writes == [] and coalescing.get_write_buffer_size() >= 21
        await asyncio.sleep(0)
        assert recorder.writes == [b"headers|data|trailers"]
        coalescing.write(b"next")
        await asyncio.sleep(0)
        assert recorder.writes[1:] == [b"next"]
        assert _read_all(peer, 25) == b"headers|data|trailersnext"
        coalescing.close()
        peer.close()

    asyncio.run(scenario())


def test_large_writes_are_not_held_back() -> None:
    async def scenario() -> None:
        recorder, coalescing, peer = await _pair()
        big = b"x" * FLUSH_AT
        coalescing.write(b"a")
        coalescing.write(big)
        assert recorder.writes == [b"a" + big]  # at once, so the transport can apply backpressure
        await asyncio.sleep(0)
        assert len(recorder.writes) == 1
        assert _read_all(peer, FLUSH_AT + 1) == b"a" + big
        coalescing.close()
        peer.close()

    asyncio.run(scenario())


def test_close_sends_what_is_pending_and_abort_drops_it() -> None:
    async def scenario() -> None:
        recorder, coalescing, peer = await _pair()
        coalescing.write(b"goaway")
        coalescing.close()
        assert coalescing.is_closing()
        assert _read_all(peer, 6) == b"goaway"
        peer.close()

        recorder, coalescing, peer = await _pair()
        coalescing.write(b"lost")
        coalescing.abort()
        await asyncio.sleep(0)
        assert recorder.writes == []
        peer.close()

    asyncio.run(scenario())


def test_extra_info_is_the_sockets() -> None:
    async def scenario() -> None:
        recorder, coalescing, peer = await _pair()
        assert coalescing.get_extra_info("socket") is not None
        assert coalescing.get_extra_info("no such key", "default") == "default"
        coalescing.close()
        peer.close()

    asyncio.run(scenario())
