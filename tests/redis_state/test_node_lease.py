"""Snowflake node numbers leased in Redis (storage/node_lease.py): unique among live processes,
also after Redis lost its data — a shared counter restarted at 0 then, and handed a new process
the number of one still running, so both minted the same ids."""

from __future__ import annotations

from typing import Any

import pytest

from jobworkerp.aio import call_asyncio
from jobworkerp.ids import MAX_NODE
from jobworkerp.storage.node_lease import LEASE_MS, NodeLease

pytestmark = pytest.mark.trio


async def _forget_everything(client: Any, prefix: str) -> None:
    """What FLUSHALL does to this prefix's keys."""
    keys = await call_asyncio(client.keys, f"{prefix}*")
    if keys:
        await call_asyncio(client.delete, *keys)


async def test_live_processes_hold_different_numbers_and_keep_them(redis: tuple[Any, str]) -> None:
    client, prefix = redis
    leases = [NodeLease(client, prefix) for _ in range(20)]
    numbers = [await lease.claim() for lease in leases]
    assert len(set(numbers)) == 20 and all(0 <= n <= MAX_NODE for n in numbers)
    for lease in leases:
        await lease.renew()
    assert [lease.node_id for lease in leases] == numbers
    ttl = await call_asyncio(client.pttl, f"{prefix}snowflake:{numbers[0]}")
    assert 0 < ttl <= LEASE_MS


async def test_after_redis_lost_its_data_no_two_processes_share_a_number(redis: tuple[Any, str]) -> None:
    client, prefix = redis
    old, keeper = NodeLease(client, prefix), NodeLease(client, prefix)
    moves: list[int] = []
    old.on_change(moves.append)
    old_number, keeper_number = await old.claim(), await keeper.claim()
    await _forget_everything(client, prefix)
    # A process started now may land on a number a live one holds, before that one renews.
    newcomer = NodeLease(client, prefix)
    await call_asyncio(client.set, f"{prefix}snowflake:{old_number}", "newcomer's token")
    newcomer.node_id = old_number
    await old.renew()  # finds its number taken: moves, and says so
    await keeper.renew()  # finds its number free: takes it back
    assert moves == [old.node_id] and old.node_id not in (old_number, keeper_number)
    assert keeper.node_id == keeper_number
    holders = {n: await call_asyncio(client.get, f"{prefix}snowflake:{n}")
               for n in (old.node_id, keeper_number, old_number)}
    assert len({holder for holder in holders.values()}) == 3  # three numbers, three holders
