"""What a server answers a call it refuses: the gRPC status and its message."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobworkerp.testing.server import Client, connect, run


def status_of(port: int, call: Callable[[Client], Awaitable[object]]) -> tuple[Status, str]:
    """Run `call` against the server on `port`; the gRPC status and message it failed with."""
    async def scenario() -> None:
        async with connect(port) as c:
            await call(c)

    with pytest.raises(GRPCError) as info:
        run(scenario())
    return info.value.status, info.value.message or ""
