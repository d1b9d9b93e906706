"""Snowflake ids with the upstream bit layout: ``ms_since_unix_epoch << 22 | node << 12 | seq``.

Unlike upstream's lazy batches, ids here are strictly increasing within a process: the sequence
advances within a millisecond and, when it wraps or the clock steps back, the timestamp part is
bumped past the last one issued. Clients only treat ids as opaque int64, so this is compatible.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import threading
import time

NODE_BITS = 10
SEQ_BITS = 12
MAX_NODE = (1 << NODE_BITS) - 1
MAX_SEQ = (1 << SEQ_BITS) - 1


def _preference(addr: ipaddress.IPv4Address) -> int:
    """Upstream's choice of interface: public > 192.168/16 > 172.16/12 > 10/8 > loopback."""
    if addr.is_loopback:
        return 0
    if addr in ipaddress.ip_network("10.0.0.0/8"):
        return 1
    if addr in ipaddress.ip_network("172.16.0.0/12"):
        return 2
    if addr in ipaddress.ip_network("192.168.0.0/16"):
        return 3
    return 4


def node_id_from_host() -> int:
    """10-bit node number from this host's best IPv4 address (random when there is none)."""
    candidates: set[ipaddress.IPv4Address] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            candidates.add(ipaddress.IPv4Address(info[4][0]))
    except OSError:
        pass
    if not candidates:
        return random.randrange(MAX_NODE + 1)
    best = max(candidates, key=lambda a: (_preference(a), int(a)))
    return int(best) & MAX_NODE


class SnowflakeGenerator:
    """Thread-safe, strictly increasing snowflake ids for one node."""

    def __init__(self, node_id: int | None = None, clock=time.time) -> None:
        node = node_id_from_host() if node_id is None else node_id
        if not 0 <= node <= MAX_NODE:
            raise ValueError(f"node_id must be in 0..{MAX_NODE}, got {node}")
        self.node_id = node
        self._clock = clock
        self._last_ms = -1
        self._seq = 0
        self._lock = threading.Lock()

    def move_to(self, node_id: int) -> None:
        """Mint ids of another node from now on (a Scalable process whose node number was taken
        over: storage/node_lease.py). Ids stay increasing: the time part never goes back."""
        if not 0 <= node_id <= MAX_NODE:
            raise ValueError(f"node_id must be in 0..{MAX_NODE}, got {node_id}")
        with self._lock:
            self.node_id = node_id

    def next_id(self) -> int:
        with self._lock:
            now_ms = int(self._clock() * 1000)
            if now_ms > self._last_ms:
                self._last_ms = now_ms
                self._seq = 0
            else:
                self._seq += 1
                if self._seq > MAX_SEQ:
                    self._last_ms += 1
                    self._seq = 0
            return (self._last_ms << (NODE_BITS + SEQ_BITS)) | (self.node_id << SEQ_BITS) | self._seq


def split_id(snowflake: int) -> tuple[int, int, int]:
    """(epoch_ms, node, seq) of an id, for debugging and tests."""
    return snowflake >> (NODE_BITS + SEQ_BITS), (snowflake >> SEQ_BITS) & MAX_NODE, snowflake & MAX_SEQ
