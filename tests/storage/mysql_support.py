"""How the storage tests reach MariaDB: probe once per process, one database per test.

The server is reached over TCP (``JWTEST_MYSQL_HOST/PORT/USER/PASSWORD``, default
root@127.0.0.1:3306 without password); when TCP login is refused (Debian's root authenticates
by unix_socket) the socket ``JWTEST_MYSQL_SOCKET`` (default /run/mysqld/mysqld.sock) is tried.
An unreachable server FAILS the MySQL tests: a silently skipped driver would shrink the suite.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import trio
import trio_mysql

from jobworkerp.storage.mysql import MysqlRepository
from jobworkerp.storage.mysql_pool import MysqlParams, MysqlPool

MARIADB_START_COMMAND = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"
_ACCESS_DENIED = {1045, 1698}

# Per test process: the connection that works, or why none does (probed once, lazily).
_probe: MysqlParams | str | None = None


def _tcp_params() -> MysqlParams:
    return MysqlParams(
        host=os.environ.get("JWTEST_MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("JWTEST_MYSQL_PORT", "3306")),
        user=os.environ.get("JWTEST_MYSQL_USER", "root"),
        password=os.environ.get("JWTEST_MYSQL_PASSWORD", ""),
        connect_timeout=3,
    )


def socket_path() -> str:
    return os.environ.get("JWTEST_MYSQL_SOCKET", "/run/mysqld/mysqld.sock")


async def try_connect(params: MysqlParams) -> None:
    """Open a one-connection pool with `params`, run one query, close it."""
    pool = MysqlPool(params, 1)
    pool.open()
    try:
        async with pool.session() as session:
            await session.fetch_one("SELECT 1")
    finally:
        await pool.aclose()


async def _probe_server() -> MysqlParams | str:
    """Connection settings that log in, or the failure message for the tests."""
    tcp = _tcp_params()
    try:
        await try_connect(tcp)
        return tcp
    except (trio_mysql.err.MySQLError, trio.TooSlowError, OSError) as err:
        tcp_error = err
    code = tcp_error.args[0] if tcp_error.args else None
    if code in _ACCESS_DENIED and await trio.Path(socket_path()).exists():
        via_socket = replace(tcp, unix_socket=socket_path())
        try:
            await try_connect(via_socket)
            return via_socket
        except (trio_mysql.err.MySQLError, trio.TooSlowError, OSError) as err:
            return f"MariaDB refused {tcp.user!r} over TCP ({tcp_error}) and over {socket_path()} ({err})"
    return f"MariaDB at {tcp.host}:{tcp.port} is not reachable ({tcp_error!r}). Start it with: {MARIADB_START_COMMAND}"


async def mysql_server() -> MysqlParams:
    """Server-level connection settings (no database); fails the test when unreachable."""
    global _probe
    if _probe is None:
        _probe = await _probe_server()
    if isinstance(_probe, str):
        pytest.fail(_probe, pytrace=False)
    return _probe


def mysql_database_name(tmp_path: Path) -> str:
    """Unique per test (tmp_path) and per process; stable for the same tmp_path."""
    digest = hashlib.sha1(str(tmp_path).encode()).hexdigest()[:12]
    return f"jwtest_{os.getpid()}_{digest}"


async def mysql_admin(server: MysqlParams, sql: str) -> None:
    """One server-level statement (CREATE/DROP DATABASE) on a throwaway connection."""
    pool = MysqlPool(server, 1)
    pool.open()
    try:
        async with pool.session() as session:
            await session.execute(sql)
    finally:
        await pool.aclose()


@asynccontextmanager
async def temporary_database(tmp_path: Path) -> AsyncIterator[MysqlParams]:
    """Create this test's database; drop it on exit, even when the test failed or timed out."""
    server = await mysql_server()
    name = mysql_database_name(tmp_path)
    await mysql_admin(server, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield replace(server, database=name)
    finally:
        with trio.move_on_after(10) as scope:
            scope.shield = True
            await mysql_admin(server, f"DROP DATABASE IF EXISTS `{name}`")


def mysql_repository(params: MysqlParams, max_connections: int = 4) -> MysqlRepository:
    """An unopened MySQL driver over ``params`` (which must name a database)."""
    assert params.database is not None
    return MysqlRepository(
        host=params.host,
        port=params.port,
        user=params.user,
        password=params.password,
        database=params.database,
        unix_socket=params.unix_socket,
        max_connections=max_connections,
        connect_timeout=params.connect_timeout,
    )


def probed_server() -> MysqlParams:
    """The settings found by :func:`mysql_server` (which a fixture must have awaited)."""
    if not isinstance(_probe, MysqlParams):
        raise RuntimeError("the MySQL server has not been probed yet (request the storage fixture first)")
    return _probe
