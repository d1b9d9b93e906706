"""The dashboard's gRPC client: the public API, called from trio through the asyncio bridge.

The dashboard uses nothing but the public API (the v0.7 services), so it shows the same thing
against any front, and needs no access to storage. The calls are made by grpclib's client, an
asyncio library: each use is one hop (`aio.call_asyncio_task`) running one coroutine of
`queries.py` that may make several calls, so a page costs one hop, not one per call. A trio
cancellation (a client that hung up, a stop) cancels the asyncio task and its calls.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from jobworkerp.aio import call_asyncio_task
from jobworkerp.client.connection import Services, services_over
from jobworkerp.dashboard.listen import Target

T = TypeVar("T")
CALL_TIMEOUT_S = 15.0  # each unary or listing call; streams that follow results have none


async def _open(target: Target) -> Services:
    """Asyncio side: the stubs over one lazily dialled connection (grpclib binds the loop here)."""
    from jobworkerp.client.fair_channel import FairChannel
    from jobworkerp.wire_codec import MessageCodec

    channel = FairChannel(target.host, target.port, ssl=target.ssl, codec=MessageCodec())
    return services_over(channel, CALL_TIMEOUT_S, target.token)


class Api:
    """One connection to the API, shared by every page and stream of the dashboard."""

    def __init__(self, services: Services, target: Target) -> None:
        self.services = services
        self.target = target

    @classmethod
    async def open(cls, target: Target) -> Api:
        return cls(await call_asyncio_task(_open, target), target)

    def close(self) -> None:
        self.services.channel.close()

    async def run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """Run `fn(services, *args)` (a coroutine of queries.py) on the asyncio side."""
        return await call_asyncio_task(fn, self.services, *args)
