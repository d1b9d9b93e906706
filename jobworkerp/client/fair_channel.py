"""A grpclib `Channel` whose calls wait for a free HTTP/2 stream in the order they were made.

Why: a server allows at most MAX_CONCURRENT_STREAMS open streams per connection (this one
`GRPC_MAX_CONCURRENT_STREAMS`, 100 by default). With more calls than that on one channel, grpclib
parks the extra calls on one event and wakes them all whenever a stream closes; the caller whose
call just ended, asking again at once, gets the freed stream before any woken caller runs. The
same callers then keep the streams and the others starve: with 200 callers of 10 ms jobs on a
server allowing 100 streams, half the calls took ~70 ms and the slowest percent 1.7 s or more
(`bench/perf.py`'s row (c) drives just that). Waiting here instead, first come first served,
every call waits about as long as the others; and the woken-for-nothing callers no longer cost
CPU (the client's CPU per call fell by about a fifth in that run).

`StreamGate` admits a call while fewer calls are open than the server's current
MAX_CONCURRENT_STREAMS (read from the connection's HTTP/2 settings; `UNKNOWN_LIMIT` before the
connection exists, after which the server's SETTINGS say), otherwise queues it. A call holds its
place from entering its stream to leaving it, which covers the HTTP/2 stream's whole life. The
wait counts against the call's deadline, as grpclib's own wait does, and ends with grpclib's own
`TimeoutError('Deadline exceeded')` (asyncio.TimeoutError).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Any, cast

from grpclib.client import Channel, Handler, Stream
from grpclib.metadata import Deadline
from grpclib.protocol import H2Protocol

UNKNOWN_LIMIT = 100  # before the server's SETTINGS: RFC 9113's recommended minimum


class StreamGate:
    """Calls open at once, at most `limit()`; the others wait in arrival order."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, deadline: Deadline | None) -> None:
        if not self._waiters and self._open < self._limit():
            self._open += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.admit()  # a place may be free already (the limit grew, waiters left)
        try:
            if deadline is None:
                await waiter
            else:
                async with asyncio.timeout(deadline.time_remaining()):
                    await waiter
        except BaseException as e:
            if waiter.done() and not waiter.cancelled():
                self.release()  # admitted just as the wait ended: pass the place on
            else:
                waiter.cancel()
                # Gone already if `admit` ran between the cancel (which cancels the awaited
                # future at once) and this handler, and skipped it.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(e, TimeoutError):
                raise TimeoutError("Deadline exceeded") from None
            raise

    def release(self) -> None:
        self._open -= 1
        self.admit()

    def admit(self) -> None:
        """Let waiters in, oldest first, while there is room (also when the limit grew)."""
        while self._waiters and self._open < self._limit():
            waiter = self._waiters.popleft()
            if waiter.done():  # cancelled, not yet removed by its caller
                continue
            self._open += 1
            waiter.set_result(None)

    @property
    def waiting(self) -> bool:
        return bool(self._waiters)


class _GatedCall:
    """One call's stream behind the gate: `async with` waits for a place, then enters grpclib's
    stream (which is what the block gets); leaving it gives the place back. Anything else is
    the stream's."""

    def __init__(self, stream: Stream[Any, Any], gate: StreamGate, deadline: Deadline | None) -> None:
        self._stream = stream
        self._gate = gate
        self._deadline = deadline

    async def __aenter__(self) -> Stream[Any, Any]:
        await self._gate.acquire(self._deadline)
        try:
            return await self._stream.__aenter__()
        except BaseException:
            self._gate.release()
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self._stream.__aexit__(exc_type, exc, tb)
        finally:
            self._gate.release()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _SettingsWatch(H2Protocol):
    """grpclib's client protocol; after each read, waiting calls are looked at again, since the
    read may have carried the server's SETTINGS (a new MAX_CONCURRENT_STREAMS)."""

    def __init__(self, gate: StreamGate, *args: Any) -> None:
        super().__init__(*args)
        self._gate = gate

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._gate.waiting:
            self._gate.admit()


class FairChannel(Channel):
    """`grpclib.client.Channel` (same arguments) with calls admitted through a `StreamGate`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate = StreamGate(self._stream_limit)

    def _stream_limit(self) -> int:
        connection = getattr(self._protocol, "connection", None)  # set once the socket is connected
        if connection is None:
            return UNKNOWN_LIMIT
        return int(connection._connection.remote_settings.max_concurrent_streams)

    def _protocol_factory(self) -> H2Protocol:
        return _SettingsWatch(self._gate, Handler(), self._config, self._h2_config)

    def request(self, name: str, cardinality: Any, request_type: Any, reply_type: Any, *,
                timeout: float | None = None, deadline: Deadline | None = None,
                metadata: Any = None) -> Stream[Any, Any]:
        # One deadline for the wait here and the call itself (grpclib would make its own).
        if timeout is not None:
            by_timeout = Deadline.from_timeout(timeout)
            deadline = by_timeout if deadline is None else min(by_timeout, deadline)
        stream = super().request(name, cardinality, request_type, reply_type, deadline=deadline, metadata=metadata)
        return cast("Stream[Any, Any]", _GatedCall(stream, self._gate, deadline))
