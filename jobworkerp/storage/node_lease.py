"""Scalable: each process's snowflake node number, leased in Redis so no two live processes share one.

Job ids are `ms << 22 | node << 12 | seq`: two processes with the same node number can mint the
same id in the same millisecond. Upstream derives the node from the host's IP address, which
every process on one host shares. A shared counter (what this replaced) gave each process start
its own number — until Redis lost its data (FLUSHALL, a restart without persistence): the
counter began again at 0, and the next process got the number of one still running.

Here a process holds `snowflake:{n}` with its own token and a lease, renewed every RENEW_S. After
Redis lost the key, the holder takes it back at its next renewal; a key taken meanwhile by a new
process (possible only within one renewal period, and only if that process started looking at
the same number: the search starts at a random one) makes the older holder move to a free
number, so ids stay unique from then on.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from typing import Any

import trio

from jobworkerp.aio import call_asyncio
from jobworkerp.errors import Unavailable, is_outage
from jobworkerp.ids import MAX_NODE

log = logging.getLogger(__name__)

LEASE_MS = 30_000
RENEW_S = 10.0

# ARGV: key stem, token, lease ms, current number (-1: none yet), where to start looking.
# Returns the number held now, or -1 when all are taken.
_HOLD = f"""
local stem, token, lease = ARGV[1], ARGV[2], ARGV[3]
local current = tonumber(ARGV[4])
if current >= 0 then
  local key = stem .. current
  local holder = redis.call('GET', key)
  if holder == token then
    redis.call('PEXPIRE', key, lease)
    return current
  end
  if not holder then
    redis.call('SET', key, token, 'PX', lease)
    return current
  end
end
local start = tonumber(ARGV[5])
for i = 0, {MAX_NODE} do
  local n = (start + i) % {MAX_NODE + 1}
  if redis.call('SET', stem .. n, token, 'NX', 'PX', lease) then return n end
end
return -1
"""


class NodeLease:
    """The node number this process holds; `run` keeps it (and moves it when it must)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._stem = f"{prefix}snowflake:"
        self._token = uuid.uuid4().hex
        self._hold = client.register_script(_HOLD)
        self.node_id = -1
        self._listeners: list[Callable[[int], None]] = []

    def on_change(self, listener: Callable[[int], None]) -> None:
        """Call `listener(new_node)` whenever the process has to move to another number."""
        self._listeners.append(listener)

    async def _try_hold(self) -> int:
        return int(await call_asyncio(self._hold, args=[self._stem, self._token, LEASE_MS, self.node_id,
                                                        random.randrange(MAX_NODE + 1)]))

    async def claim(self) -> int:
        """Take a free number at start (Unavailable when all 1024 are held)."""
        node = await self._try_hold()
        if node < 0:
            raise Unavailable(f"all {MAX_NODE + 1} snowflake node numbers are held by live processes")
        self.node_id = node
        return node

    async def renew(self) -> None:
        """Keep the number, take it back if Redis lost it, or move if another process has it."""
        node = await self._try_hold()
        if node < 0:
            log.error("snowflake node %d was taken by another process and no number is free; ids may collide",
                      self.node_id)
            return
        if node != self.node_id:
            log.warning("snowflake node %d was taken by another process (Redis lost its data?); moved to %d",
                        self.node_id, node)
            self.node_id = node
            for listener in self._listeners:
                listener(node)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(RENEW_S)
            try:
                await self.renew()
            except Exception as e:
                if not is_outage(e):
                    raise
                # Redis is out: the lease outlives a few missed renewals, and a lapsed one is
                # taken back (or moved) at the first renewal that gets through.
                continue
