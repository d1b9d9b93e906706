"""Runner host side: die with the parent, and take the host's own children along.

A host that outlives its pool is an orphan nobody will ever call or kill: when the parent is
SIGKILLed (or crashes) while the host runs a long call, the host would finish that call, or
hang in it, for good, and so would the processes the call started. So a daemon thread waits
for the protocol pipe from the parent to hang up (all its write ends closed: the parent is
gone, or closed the pool) and then kills the host's whole process group — the host and
whatever it spawned (the pool starts each host as its own group leader).

Not Linux's parent-death signal: it fires when the parent *thread* that forked exits, and the
pool forks from a worker thread (trio runs Popen in one) that ends while the host lives on.
"""

from __future__ import annotations

import os
import select
import signal
import threading

__all__ = ["die_with_parent"]


def _watch(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, 0)  # no events asked for: only hang-up and error are reported
    while True:
        for _fd, events in poller.poll():
            if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                os.killpg(os.getpgrp(), signal.SIGKILL)


def die_with_parent(proto_in: int) -> None:
    """Kill this host's process group once the parent's end of `proto_in` is closed."""
    threading.Thread(target=_watch, args=(proto_in,), name="actors-parent-watch", daemon=True).start()
