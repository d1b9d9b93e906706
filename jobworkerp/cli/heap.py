"""Garbage-collector settings for a server process (called once, before the trio run starts).

Why: CPython's full collections walk every tracked object, and a server's heap is mostly objects
that live as long as the process (modules, classes, functions, protobuf descriptors: about
60 000 after start-up). Under load a full collection every few seconds walked them all and
stalled the event loop for tens of milliseconds each time, which every request in flight —
health checks included — waited out (bench/overload.py). Freezing what start-up created moves
it out of the collector's sight; the objects still die by reference counting if dropped.

Full collections are also made more frequent (the third threshold 10 -> 2): each request used
to leave a few dozen objects in reference cycles (grpclib's streams, the trio <-> asyncio hop),
and collecting them every couple of seconds in one go was the other long stall. More frequent,
smaller collections cost the same in total and stall the loop for less each time. (Those cycles
are gone — aio.py, front/message_limit.py, tests/unit/test_no_cycles_per_request.py — so under
load the collector now has little to do at all; these settings bound what is left.)

Young collections wait for 5 000 new container objects instead of 700. A job's objects mostly die
by reference counting within the job; at 700, with 50 jobs in flight, each young collection still
found many of them alive, walked them, and promoted them, for older collections to walk again.
Under 50 DIRECT callers the server spent 7 % of its CPU in the collector (perf); at 5 000, CPU per
job fell by 7-8 %, with the health probe of bench/overload.py no slower (p99 32 ms against 34 ms)
and 5 MB more resident memory.
"""

from __future__ import annotations

import gc

YOUNG_COLLECTION_AFTER = 5_000  # new container objects between two young collections (CPython's: 700)
FULL_COLLECTION_EVERY = 2  # middle collections between two full ones (CPython's default: 10)


def settle_heap() -> None:
    """Collect once, freeze what is left (start-up's long-lived objects), set the pacing above."""
    gc.collect()
    gc.freeze()
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_AFTER, middle, FULL_COLLECTION_EVERY)
