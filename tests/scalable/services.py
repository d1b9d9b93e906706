"""Real Redis + MariaDB for multi-process Scalable tests: a fresh MySQL database and Redis key
prefix per use, dropped afterwards, and the env that points server processes at them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
import trio

from jobworkerp.testing.server import ServerProcess
from tests.services import REDIS_URL, require_redis
from tests.storage.mysql_support import mysql_admin, mysql_server


@contextmanager
def scalable_env() -> Iterator[dict[str, str]]:
    require_redis()
    server = trio.run(mysql_server)
    name = f"jwtest_mp_{uuid.uuid4().hex[:12]}"
    prefix = f"jwtest:{uuid.uuid4().hex[:12]}:"
    trio.run(mysql_admin, server, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    env = {
        "STORAGE_TYPE": "Scalable",
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
        "MYSQL_HOST": server.host,
        "MYSQL_PORT": str(server.port),
        "MYSQL_USER": server.user,
        "MYSQL_PASSWORD": server.password,
        "MYSQL_DBNAME": name,
        "JOB_QUEUE_FETCH_INTERVAL": "500",
        "JOB_QUEUE_WORKER_LEASE_MS": "1000",
        "WORKER_DEFAULT_CONCURRENCY": "2",
    }
    if server.unix_socket:
        env["MYSQL_UNIX_SOCKET"] = server.unix_socket
    try:
        yield env
    finally:
        trio.run(mysql_admin, server, f"DROP DATABASE IF EXISTS `{name}`")
        client = redis.Redis.from_url(REDIS_URL)
        keys = client.keys(f"{prefix}*")
        if keys:
            client.delete(*keys)
        client.close()


@contextmanager
def front_and_worker(workdir: Path) -> Iterator[ServerProcess]:
    """A Scalable cluster of one grpc-front and one worker process on a fresh `scalable_env()`;
    yields the front. Both must stop with exit code 0."""
    with scalable_env() as env:
        front = ServerProcess(workdir, env, mode="grpc-front", name="front").start()
        worker = ServerProcess(workdir, env, mode="worker", name="worker").start()
        try:
            yield front
        finally:
            codes = [front.stop(), worker.stop()]
        assert codes == [0, 0], f"{front.log()}\n{worker.log()}"
