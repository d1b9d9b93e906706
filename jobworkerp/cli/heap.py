"""Garbage-collector settings for a server process (called once, before the trio run starts).

Why: CPython's full collections walk every tracked object, and a server's heap is mostly objects
that live as long as the process (modules, classes, functions, protobuf descriptors: about
60 000 after start-up). Under load a full collection every few seconds walked them all and
stalled the event loop for tens of milliseconds each time, which every request in flight —
health checks included — waited out (bench/overload.py). Freezing what start-up created moves
it out of the collector's sight; the objects still die by reference counting if dropped.

Full collections are also made more frequent (the third threshold 10 -> 2): each request leaves
a few dozen objects in reference cycles (grpclib's streams, the trio <-> asyncio hop), and
collecting them every couple of seconds in one go was the other long stall. More frequent,
smaller collections cost the same in total and stall the loop for less each time.
"""

from __future__ import annotations

import gc

FULL_COLLECTION_EVERY = 2  # young collections between two full ones (CPython's default: 10)


def settle_heap() -> None:
    """Collect once, freeze what is left (start-up's long-lived objects), tighten gen-2 pacing."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
