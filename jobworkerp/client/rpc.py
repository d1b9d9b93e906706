"""Calls to the server with the client's rules: typed errors, default timeout, retried reads.

Every call the client makes goes through `Rpc.call`: what grpclib or the socket raises becomes a
`ClientError` (`errors.translate`), a call without its own timeout gets the client's default,
and a call marked idempotent (a read, or a wait such as Listen) that fails with `Unavailable` is
tried again after a short growing pause, up to `retries` times: a server restarting or a
connection dropped under a read should not fail the caller. Writes (create, enqueue, delete) are
never repeated, since the first attempt may have been done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from jobworkerp.client.connection import Services
from jobworkerp.client.errors import Unavailable, translate

T = TypeVar("T")

RETRY_FIRST_PAUSE_S = 0.2
RETRY_MAX_PAUSE_S = 2.0
DEFAULT = object()  # "the client's default timeout" (None means no timeout)


class Rpc:
    def __init__(self, services: Services, address: str, timeout: float | None, retries: int) -> None:
        self.services = services
        self.address = address
        self.timeout = timeout  # seconds, for calls that do not wait for a job
        self.retries = retries

    async def call(self, fn: Callable[[float | None], Awaitable[T]], *, idempotent: bool,
                   seconds: float | None | object = DEFAULT) -> T:
        """`fn(timeout)` with errors translated, `timeout` being `seconds` or the client's default
        (the gRPC deadline of the call); retried on Unavailable when `idempotent`."""
        if seconds is DEFAULT:
            seconds = self.timeout
        assert seconds is None or isinstance(seconds, (int, float))
        pause = RETRY_FIRST_PAUSE_S
        for attempt in range(self.retries + 1):
            try:
                return await fn(seconds)
            except Exception as e:
                error = translate(e, self.address)
                if error is None:
                    raise
                if not (idempotent and isinstance(error, Unavailable) and attempt < self.retries):
                    raise error from e
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX_PAUSE_S)
        raise AssertionError("unreachable")  # the last attempt returns or raises

    async def stream(self, items: AsyncIterator[T]) -> AsyncIterator[T]:
        """A server stream with errors translated (not retried: items may have been seen)."""
        try:
            async for item in items:
                yield item
        except Exception as e:
            error = translate(e, self.address)
            if error is None:
                raise
            raise error from e
