"""One Redis pub/sub connection shared by a process, on a trio socket (storage/redis_wire.py).

Channels are added and removed on demand. `subscribe` returns once Redis has confirmed the
subscription, so a caller that subscribes, then checks storage, cannot miss a message published
in between. A channel stays held (`holds`) until Redis confirms its UNSUBSCRIBE, and every channel
held is subscribed again when the connection comes back, as redis-py's PubSub does.

Why not redis-py's PubSub: a front reads one message per DIRECT job it serves, and through the
asyncio bridge each read cost the asyncio transport, redis-py's PubSub and a trio-asyncio
round; read here, a message costs a socket read and hiredis parsing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from jobworkerp.backoff import Backoff
from jobworkerp.errors import is_outage
from jobworkerp.storage.redis_wire import RedisSocket

log = logging.getLogger(__name__)


class RedisSubscription:
    def __init__(self, client: Any) -> None:
        self._socket = RedisSocket(client)
        self._channels: set[bytes] = set()  # subscribed, or to be again once the connection is back
        self._leaving: set[bytes] = set()  # UNSUBSCRIBE sent, not yet confirmed
        self._confirmed: dict[bytes, trio.Event] = {}  # SUBSCRIBE sent -> set once Redis confirms
        self._connecting = trio.Lock()
        self._wanted = trio.Event()  # something was subscribed: the reader has work

    async def subscribe(self, channel: str) -> None:
        """Subscribe, and return once Redis has confirmed it; an outage raises."""
        key = channel.encode()
        held = key in self._channels
        event = self._confirmed.setdefault(key, trio.Event())
        try:
            await self._connected()
            self._channels.add(key)
            self._leaving.discard(key)
            self._wanted.set()
            await self._socket.send(self._socket.pack([("SUBSCRIBE", key)]))
        except BaseException:
            if not held:  # never reached Redis (the connection is gone): nothing to hold or confirm
                self._channels.discard(key)
                self._confirmed.pop(key, None)
            raise
        await event.wait()

    async def unsubscribe(self, channel: str) -> None:
        """Ask Redis to unsubscribe (the channel is held until it confirms); an outage raises."""
        key = channel.encode()
        self._confirmed.pop(key, None)
        await self._connected()
        self._leaving.add(key)
        await self._socket.send(self._socket.pack([("UNSUBSCRIBE", key)]))

    def holds(self, channel: str) -> bool:
        """Whether the connection is subscribed to the channel, or will be again when it
        reconnects: a channel is forgotten only once Redis has confirmed its UNSUBSCRIBE."""
        return channel.encode() in self._channels

    async def messages(self, on_message: Callable[[bytes, bytes], None]) -> None:
        """Deliver (channel, data) of every message until cancelled (run this in one task).

        `on_message` is plain synchronous code (it wakes trio waiters). Survives Redis going away:
        a read that fails closes the connection, and it connects again with backoff, subscribing
        again to every channel held; the outage is logged once when it starts and once when it
        ends. Messages published meanwhile are lost; listeners that must not miss one also read
        the stored state (see storage/redis_bus.py)."""
        backoff = Backoff("Redis pub/sub reader", log)
        await self._wanted.wait()  # nothing to read until the first subscribe
        while True:
            try:
                await self._connected()
                while True:
                    self._handle(await self._socket.next_reply(), on_message)
                    backoff.succeeded()
            except Exception as e:
                if not is_outage(e):
                    raise
                await self._socket.aclose()
                await backoff.failed(e)

    async def aclose(self) -> None:
        await self._socket.aclose()

    async def _connected(self) -> None:
        """Connect if the connection is down (whoever needs it first), subscribing again to every
        channel held."""
        if self._socket.connected:
            return
        async with self._connecting:
            if self._socket.connected:
                return
            await self._socket.connect()
            if self._channels:
                await self._socket.send(self._socket.pack([("SUBSCRIBE", *sorted(self._channels))]))

    def _handle(self, reply: Any, on_message: Callable[[bytes, bytes], None]) -> None:
        if isinstance(reply, Exception):
            raise reply
        kind = reply[0]
        if kind == b"message":
            on_message(reply[1], reply[2])
        elif kind == b"subscribe":
            event = self._confirmed.get(reply[1])
            if event is not None:
                event.set()
        elif kind == b"unsubscribe":
            if reply[1] in self._leaving:  # not subscribed again since
                self._leaving.discard(reply[1])
                self._channels.discard(reply[1])
