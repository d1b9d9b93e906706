"""Parent side of the chunks a call emits while it runs (:func:`actors.hosted.emit`).

A caller that passes ``on_emit`` to :meth:`ProcessPool.run` / :meth:`ProcessPool.run_shared` gets
each chunk handed to it, synchronously, by the task reading the host's pipe: the caller's own task
for an exclusive host, the shared host's one reader task otherwise. The callback must therefore be
quick and must not block (append to a buffer, queue a write); whatever it does, the reader goes on
reading, so a slow or failing taker never stalls the host's other calls. A taker that raises is
logged once and gets nothing more from that call: its call goes on, and its reply is unaffected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from actors._framing import EMIT

if TYPE_CHECKING:
    from actors._host import Host

__all__ = ["Taker", "read_reply_emitting"]

logger = logging.getLogger("actors.process_pool")

_EMIT_BYTE = EMIT[0]


class Taker:
    """One call's ``on_emit``, guarded: the first exception it raises is logged and ends delivery."""

    __slots__ = ("_on_emit", "_what")

    def __init__(self, on_emit: Callable[[bytes], None], what: str) -> None:
        self._on_emit: Callable[[bytes], None] | None = on_emit
        self._what = what

    def __call__(self, chunk: bytes) -> None:
        on_emit = self._on_emit
        if on_emit is None:
            return
        try:
            on_emit(chunk)
        except Exception:
            self._on_emit = None
            logger.exception("%s: on_emit raised; the call's further chunks are dropped", self._what)


async def read_reply_emitting(host: Host, on_emit: Callable[[bytes], None]) -> bytes:
    """Read an exclusive host's frames for one call: chunks (EMIT, then the bytes) go to
    ``on_emit``; the first other frame is the reply (a bare pickle, `_framing`), returned."""
    taker = Taker(on_emit, f"{host.pool_name} host {host.pid}")
    while True:
        payload = await host.read_frame()
        if payload and payload[0] == _EMIT_BYTE:
            taker(payload[1:])
            continue
        return payload
