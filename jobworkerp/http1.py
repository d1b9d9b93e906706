"""One HTTP/1.1 server connection on a trio stream, with h11 keeping its state: what the
grpc-web listener (front/grpc_web.py), the dashboard (dashboard/http.py) and the metrics
endpoint (metrics/http.py) all need, written once. A leaf: trio and h11 only.
"""

from __future__ import annotations

from typing import Any

import h11
import trio

MAX_HEAD_BYTES = 16 * 1024  # a request line and its headers (h11's own default)
RECEIVE_BYTES = 64 * 1024


class ClientGone(Exception):
    """The client's connection broke (or was closed) while an answer was being written."""


class H11Connection:
    """h11's state for one connection and the trio stream under it."""

    def __init__(self, stream: trio.abc.Stream, max_head_bytes: int = MAX_HEAD_BYTES) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_bytes)

    async def next_event(self, timeout_s: float) -> Any:
        """The next h11 event, reading as needed; trio.TooSlowError when the client sends
        nothing for `timeout_s` (a slow or idle client must not hold a connection forever)."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            with trio.fail_after(timeout_s):
                self.h11.receive_data(bytes(await self.stream.receive_some(RECEIVE_BYTES)))

    async def send(self, *events: Any) -> None:
        """The events' bytes in one write; ClientGone when the connection is broken."""
        data = b"".join(self.h11.send(event) or b"" for event in events)
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ClientGone() from None


def peer_address(stream: trio.abc.Stream) -> str:
    """The remote address without its port, as the gRPC port counts auth failures."""
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    try:
        return str(transport.socket.getpeername()[0])  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return "unknown peer"
