"""The real services the tests use, and the clear failure when one is down (never a silent skip)."""

from __future__ import annotations

import socket

import pytest

REDIS_URL = "redis://127.0.0.1:6379"
START_REDIS = ('redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
               '--dir /var/lib/redis --logfile /var/log/redis/ci.log')


def require_redis() -> None:
    """Fail (not skip) when Redis is down: these tests are the only check of the Scalable parts."""
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.fail(f"Redis at 127.0.0.1:6379 is not reachable; start it with: {START_REDIS}", pytrace=False)
