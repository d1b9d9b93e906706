"""A FIFO the runner hosts write lines to and the tests read, without polling."""

from __future__ import annotations

import os
from pathlib import Path

import trio


class FifoInbox:
    """Lines written by runner hosts (see ``pool_funcs.notify``), read without polling.

    Opened read-write so there is always a writer: reads then block until a
    host writes instead of returning EOF.
    """

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        os.mkfifo(path)
        self._stream = trio.lowlevel.FdStream(os.open(path, os.O_RDWR | os.O_NONBLOCK))
        self._buffer = b""

    async def next_line(self) -> str:
        while b"\n" not in self._buffer:
            self._buffer += await self._stream.receive_some(4096)
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    async def aclose(self) -> None:
        await self._stream.aclose()
