"""The tool list follows the workers: poll the server, tell connected clients when it changed.

The v0.7 API has no worker-change stream, so `watch_tools` reads the catalog every
MCP_POLL_INTERVAL_MS and compares what `tools/list` would answer. A change is announced both
ways the SDK's clients listen, since the protocol era is the client's choice:
- 2026-07-28 clients open a `subscriptions/listen` stream; the SDK's `ListenHandler` serves it
  from `ChangeNotifier.bus` (tools and resources list changes);
- clients of the initialize handshake get `notifications/tools/list_changed` (and
  `resources/list_changed`) on their connection's own channel (stdio, or the streamable HTTP
  GET stream). Each such connection is remembered from its `notifications/initialized`, and
  forgotten when sending to it fails (it has closed).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskStatus
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourcesListChanged, ToolsListChanged

log = logging.getLogger(__name__)

SEND_LIMIT_S = 10.0  # one legacy connection's notification; a wedged one is forgotten after this


class ChangeNotifier:
    """Fans a list change out to listen streams and to handshake-era connections."""

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self._sessions: list[ServerSession] = []

    async def on_initialized(self, ctx: ServerRequestContext, _params: object) -> None:
        """`notifications/initialized` handler: remember the connection for list changes (its
        session's notifications without a request id go out on the connection's own channel),
        until it closes.

        A closed streamable HTTP session drops what is sent to it without an error, so sending
        cannot tell that it is gone: the connection's `exit_stack` (the SDK's place for
        per-connection clean-up, run when it closes) forgets it. The SDK offers a handler no
        public way to that `Connection`; mcp is pinned, and without the attribute (another SDK
        version) a connection is forgotten only when sending to it fails."""
        session = ctx.session
        self._sessions.append(session)
        connection = getattr(session, "_connection", None)
        if connection is not None:
            connection.exit_stack.callback(self._forget, session)

    def _forget(self, session: ServerSession) -> None:
        if session in self._sessions:
            self._sessions.remove(session)

    @property
    def connections(self) -> int:
        """Handshake-era connections that get list changes."""
        return len(self._sessions)

    async def lists_changed(self) -> None:
        await self.bus.publish(ToolsListChanged())
        await self.bus.publish(ResourcesListChanged())
        for session in list(self._sessions):
            try:
                with anyio.fail_after(SEND_LIMIT_S):
                    await session.send_tool_list_changed()
                    await session.send_resource_list_changed()
            except Exception as e:  # closed, broken or wedged: the client is gone
                log.debug("forgetting an MCP connection: %r", e)
                self._forget(session)


async def watch_tools(fingerprint: Callable[[], Awaitable[str]], notifier: ChangeNotifier, interval_s: float,
                      *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Poll forever. Reports started after the first look, so a change made once the transport
    serves is never taken for the starting point."""
    previous: str | None = None
    started = failing = False
    while True:
        try:
            current = await fingerprint()
        except Exception as e:  # the server may be down for a while; clients see errors on their calls
            if not failing:  # once per outage, not once per poll
                log.warning("cannot read the workers for the tool list (retrying every %s s): %s", interval_s,
                            " ".join(str(e).split()) or repr(e))
            failing = True
        else:
            if failing:
                log.info("the workers can be read again")
            failing = False
            if previous is not None and current != previous:
                log.info("the tool list changed; notifying listen streams and %d connections", notifier.connections)
                await notifier.lists_changed()
            previous = current
        if not started:
            started = True
            task_status.started()
        await anyio.sleep(interval_s)
