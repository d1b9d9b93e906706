"""GRPC_MAX_CONCURRENT_STREAMS: how many streams one HTTP/2 connection may have open at once;
and MAX_FRAME_SIZE: the largest HTTP/2 frame the server accepts.

Why: every open stream holds a handler task, and a ListenStreamByWorker or Listen stream stays
open as long as the client likes; without a cap one connection could open streams until the
server's memory ran out. h2 already refuses more than 100 inbound streams (its own default, which
this server always had); this makes the cap explicit and settable.

The server advertises the cap in its SETTINGS, so well-behaved clients (grpclib, grpc) queue
their calls at it rather than exceed it; h2 refuses a stream past it, which for h2 ends the
offending connection (TooManyStreamsError, a connection error) -- only that client's.

grpclib's Server takes no HTTP/2 settings, so this subclasses it: the one override is the
(private) protocol factory, which builds the same protocol with the cap applied as each
connection is made. The same protocol also puts `CoalescingTransport` (front/coalesce.py) under
the connection, and advertises MAX_FRAME_SIZE when it is set (upstream's setting of the same name):
a client may then send frames up to that size, fewer frames for a large message.
"""

from __future__ import annotations

import asyncio
from asyncio import BaseTransport, Transport
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, cast

from grpclib.protocol import H2Protocol
from grpclib.server import Server
from h2.settings import SettingCodes

from jobworkerp.front.coalesce import CoalescingTransport

if TYPE_CHECKING:
    from grpclib._typing import IServable


class _CappedProtocol(H2Protocol):
    """grpclib's HTTP/2 protocol, with MAX_CONCURRENT_STREAMS (and MAX_FRAME_SIZE, when given)
    set as the connection starts.

    The change goes out right after grpclib's initial SETTINGS and applies once the client acks
    it; a client acks before it opens streams past the initial value, since it must read the
    SETTINGS first."""

    def __init__(self, protocol: H2Protocol, max_concurrent_streams: int, max_frame_size: int | None) -> None:
        super().__init__(protocol.handler, protocol.config, protocol.h2_config)
        self._settings: dict[SettingCodes | int, int] = {SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams}
        if max_frame_size is not None:
            self._settings[SettingCodes.MAX_FRAME_SIZE] = max_frame_size
        # grpclib's per-connection handler forgets its finished calls only on every 10th new
        # call; until then each keeps its stream, buffers and task (~40 objects) alive. With
        # 50 busy connections that was ~20 000 objects every full garbage collection walked
        # (bench/overload.py). Forgetting on every call costs a look at the 1-2 calls a
        # connection has open.
        protocol.handler.__gc_interval__ = 1  # type: ignore[attr-defined]

    def connection_made(self, transport: BaseTransport) -> None:
        # Every write of this connection goes through CoalescingTransport: one socket write per
        # event-loop turn rather than three per answer (front/coalesce.py).
        super().connection_made(CoalescingTransport(cast(Transport, transport), asyncio.get_event_loop()))
        h2_conn = self.connection._connection
        h2_conn.update_settings(self._settings)
        if SettingCodes.MAX_FRAME_SIZE in self._settings:
            # Accepted from the start, not only once the client acks it: h2 gives its read buffer
            # a new limit only at the next read, so an ack and a large frame read in one chunk
            # ended the connection ("overlong frame"). Advertised anyway, so nothing is lost.
            h2_conn.max_inbound_frame_size = self._settings[SettingCodes.MAX_FRAME_SIZE]
        self.connection.flush()


class StreamCappedServer(Server):
    """A grpclib Server whose connections each allow at most `max_concurrent_streams` open streams
    (and frames of at most `max_frame_size` bytes; None: h2's 16384)."""

    def __init__(self, handlers: Collection[IServable], *, max_concurrent_streams: int,
                 max_frame_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(handlers, **kwargs)
        self._max_concurrent_streams = max_concurrent_streams
        self._max_frame_size = max_frame_size

    def _protocol_factory(self) -> H2Protocol:
        return _CappedProtocol(super()._protocol_factory(), self._max_concurrent_streams, self._max_frame_size)
