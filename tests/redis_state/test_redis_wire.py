"""Redis round trips on trio's own sockets (storage/redis_wire.py): the values redis-py would
return, outages that end and are recovered from, passwords, databases and TLS honoured, and a
cancelled round trip that cannot leave a stray reply for the next one."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
import trio
from redis.exceptions import AuthenticationError, NoScriptError, ResponseError

from jobworkerp.aio import call_asyncio, close_redis, open_asyncio_bridge, open_redis, run_redis_pipeline
from jobworkerp.errors import is_outage
from jobworkerp.storage.redis_wire import RedisWire
from tests.certs import make_pki
from tests.chaos.redis_instance import RedisInstance
from tests.services import REDIS_URL

pytestmark = pytest.mark.timeout(60)


def ops_on(prefix: str) -> list[Any]:
    """Commands whose replies redis-py turns into values (bools, dicts, floats), errors among them."""
    return [
        lambda p: p.set(f"{prefix}s", "v", px=60_000),
        lambda p: p.get(f"{prefix}s"),
        lambda p: p.get(f"{prefix}missing"),
        lambda p: p.hset(f"{prefix}h", mapping={"a": "1", "b": "2"}),
        lambda p: p.hgetall(f"{prefix}h"),
        lambda p: p.zadd(f"{prefix}z", {"m": 1.5}),
        lambda p: p.zscore(f"{prefix}z", "m"),
        lambda p: p.incr(f"{prefix}h"),  # wrong type: its error in its place
        lambda p: p.evalsha("0" * 40, 0),  # a script Redis does not have
        lambda p: p.expire(f"{prefix}s", 60),
        lambda p: p.exists(f"{prefix}s", f"{prefix}missing"),
        lambda p: p.eval("return {1, 'two', {3}}", 0),
    ]


async def until_redis_blocks_a_client(client: Any) -> None:
    """Redis is what is waited on here, and it sends no event: ask it."""
    while True:
        if any(c.get("cmd") == "blpop" for c in await call_asyncio(client.client_list)):
            return
        await trio.sleep(0.01)


def comparable(value: Any) -> Any:
    return (type(value).__name__, str(value)) if isinstance(value, Exception) else value


async def test_round_trip_values_are_the_ones_redis_py_returns(redis) -> None:
    client, prefix = redis
    wire = RedisWire(client)
    try:
        by_wire = await wire.round_trip(ops_on(f"{prefix}w:"))
        by_redis_py = await run_redis_pipeline(client, ops_on(f"{prefix}r:"))
    finally:
        await wire.aclose()
    assert [comparable(v) for v in by_wire] == [comparable(v) for v in by_redis_py]
    assert by_wire[0] is True and by_wire[1] == b"v" and by_wire[2] is None
    assert by_wire[4] == {b"a": b"1", b"b": b"2"} and by_wire[6] == 1.5
    assert isinstance(by_wire[7], ResponseError) and isinstance(by_wire[8], NoScriptError)


def test_commands_are_packed_as_redis_py_packs_them() -> None:
    from redis.exceptions import DataError

    from jobworkerp.storage.redis_wire import RedisSocket

    sock = RedisSocket(redis.asyncio.Redis())  # never connected: packing needs no server
    commands = [("HSET", "k", "f", b"v"), ("CLIENT SETNAME", "x"), (b"CONFIG GET", b"maxmemory"),
                ("EVALSHA", "a" * 40, 3, "k1", "k2", "k3", 1.5, 2**70, -3, "ünï", memoryview(b"mv"),
                 bytearray(b"ba"), b"x" * 100_000)]
    assert sock.pack(commands) == b"".join(sock.spec.pack_commands(commands))
    for refused in (None, True):
        with pytest.raises(DataError):
            sock.pack([("SET", "k", refused)])


async def test_a_cancelled_round_trip_leaves_no_reply_for_the_next(redis) -> None:
    client, prefix = redis
    wire = RedisWire(client)
    await call_asyncio(client.set, f"{prefix}k", "after")
    try:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                async def blocked() -> None:
                    await wire.round_trip([lambda p: p.blpop([f"{prefix}never"], timeout=30)])

                nursery.start_soon(blocked)
                await until_redis_blocks_a_client(client)
                scope.cancel()
        assert scope.cancelled_caught
        await call_asyncio(client.rpush, f"{prefix}never", "late")  # a reply the cut connection never reads
        assert await wire.round_trip([lambda p: p.get(f"{prefix}k")]) == [b"after"]
    finally:
        await wire.aclose()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_no_reply_ever_reaches_the_wrong_round_trip(redis, seed: int) -> None:
    """Round trips cut off at random points (before, while and after their commands go out),
    the connection killed by Redis, and plain round trips, in a random order: every round trip
    that returns gets its own replies, never one left over from another."""
    base, prefix = redis
    name = f"{prefix}rand{seed}".replace(":", "-")
    client = redis_py_client_named(name)
    wire = RedisWire(client)
    rng = random.Random(seed)
    try:
        for step in range(40):
            action = rng.choice(["plain", "cut", "cut", "kill"])
            if action == "cut":  # a blocking command whose reply may come after the cut
                await call_asyncio(base.rpush, f"{prefix}list", b"x")
                async with trio.open_nursery() as nursery:
                    async def cut_off() -> None:
                        with contextlib.suppress(Exception):
                            await wire.round_trip([lambda p: p.blpop([f"{prefix}list"], timeout=1),
                                                   lambda p: p.get(f"{prefix}other")])

                    nursery.start_soon(cut_off)
                    for _ in range(rng.randint(0, 4)):
                        await trio.lowlevel.checkpoint()
                    nursery.cancel_scope.cancel()
            elif action == "kill":
                ours = [c for c in await call_asyncio(base.client_list) if c.get("name") == name]
                for c in ours:
                    await call_asyncio(base.client_kill_filter, _id=c["id"])
            value = f"v{step}".encode()
            assert await wire.round_trip([lambda p, v=value: p.set(f"{prefix}k", v), lambda p: p.get(f"{prefix}k"),
                                          lambda p, v=value: p.echo(v)]) == [True, value, value]
    finally:
        await wire.aclose()
        await close_redis(client)


def redis_py_client_named(name: str) -> Any:
    return open_redis(f"{REDIS_URL}?client_name={name}")


async def test_a_connection_redis_closed_while_idle_is_replaced_before_use(redis) -> None:
    """An idle connection Redis dropped (its client `timeout`, CLIENT KILL) must not fail the
    next commands as an outage: they never reached Redis, so they go on a new connection."""
    client, prefix = redis
    wire = RedisWire(client)
    name = f"{prefix}idle".replace(":", "-")
    try:
        await wire.round_trip([lambda p: p.client_setname(name)])
        ours = [c for c in await call_asyncio(client.client_list) if c.get("name") == name]
        assert len(ours) == 1
        assert await call_asyncio(client.client_kill_filter, _id=ours[0]["id"]) == 1
        assert await wire.round_trip([lambda p: p.set(f"{prefix}k", "1"), lambda p: p.get(f"{prefix}k")]) \
            == [True, b"1"]
    finally:
        await wire.aclose()


@asynccontextmanager
async def wires(*clients: Any) -> AsyncIterator[list[RedisWire]]:
    """A wire per client; the wires and the clients closed after the block."""
    opened = [RedisWire(client) for client in clients]
    try:
        yield opened
    finally:
        for wire in opened:
            await wire.aclose()
        for client in clients:
            await close_redis(client)


async def test_redis_going_away_is_an_outage_and_its_return_is_noticed(tmp_path: Path) -> None:
    with RedisInstance(tmp_path).running() as instance:
        async with open_asyncio_bridge(), wires(open_redis(instance.url)) as (wire,):
            assert await wire.round_trip([lambda p: p.set("k", "1")]) == [True]
            instance.stop()
            with pytest.raises(Exception) as failed:
                await wire.round_trip([lambda p: p.get("k")])
            assert is_outage(failed.value)
            instance.start()  # same port; the AOF kept the key
            assert await wire.round_trip([lambda p: p.get("k")]) == [b"1"]


async def test_password_and_database_of_the_client_are_used(tmp_path: Path) -> None:
    with RedisInstance(tmp_path, ["--requirepass", "s3cret"]).running() as instance:
        async with open_asyncio_bridge(), wires(open_redis(instance.url, password="s3cret", db=3),
                                                open_redis(instance.url, password="nope")) as (wire, refused):
            assert await wire.round_trip([lambda p: p.set("in-db-3", "1")]) == [True]
            db0 = redis.asyncio.Redis(port=instance.port, password="s3cret", db=0)
            db3 = redis.asyncio.Redis(port=instance.port, password="s3cret", db=3)
            assert await call_asyncio(db3.get, "in-db-3") == b"1"
            assert await call_asyncio(db0.get, "in-db-3") is None
            await call_asyncio(db0.aclose)
            await call_asyncio(db3.aclose)
            with pytest.raises(AuthenticationError):
                await refused.round_trip([lambda p: p.get("in-db-3")])


async def test_a_rediss_url_talks_tls_and_checks_the_servers_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    instance = RedisInstance(tmp_path)
    instance.extra_args = ["--tls-port", str(instance.tls_port), "--tls-cert-file", str(pki.server_cert),
                           "--tls-key-file", str(pki.server_key), "--tls-ca-cert-file", str(pki.ca_cert),
                           "--tls-auth-clients", "no"]
    url = f"rediss://127.0.0.1:{instance.tls_port}"
    with instance.running():
        async with open_asyncio_bridge(), wires(open_redis(url, tls_ca_cert=str(pki.ca_cert)),
                                                open_redis(url, tls_ca_cert=str(pki.other_ca_cert))) as (wire, refused):
            assert await wire.round_trip([lambda p: p.set("over-tls", "1"), lambda p: p.get("over-tls")]) \
                == [True, b"1"]
            with pytest.raises(Exception) as failed:
                await refused.round_trip([lambda p: p.get("over-tls")])
            assert is_outage(failed.value) and "CERTIFICATE_VERIFY_FAILED" in str(failed.value)
