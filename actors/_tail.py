"""A bounded byte buffer that keeps only the most recent output.

A chatty runner host must never block on a full stderr pipe, yet a crash report
needs the last few KB (faulthandler writes its report there), so we drain
everything and keep only the tail.
"""

from __future__ import annotations

__all__ = ["TailBuffer"]


class TailBuffer:
    """Keeps the last ``limit`` bytes written to it."""

    __slots__ = ("_buf", "_limit")

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        """Append ``data``, discarding the oldest bytes beyond the limit."""
        if len(data) >= self._limit:
            self._buf[:] = data[-self._limit :]
            return
        self._buf += data
        excess = len(self._buf) - self._limit
        if excess > 0:
            del self._buf[:excess]

    def text(self) -> str:
        """The retained bytes decoded leniently (a cut may split a UTF-8 sequence)."""
        return self._buf.decode("utf-8", errors="replace")

    def __len__(self) -> int:
        return len(self._buf)
