"""Length-prefixed frames shared by the pool (parent) and the runner host.

A frame is a 4-byte big-endian payload length followed by the payload. This
module must stay free of trio imports because the host process uses it too.
"""

from __future__ import annotations

import os
import struct

import cloudpickle

__all__ = ["HEADER", "READY_PAYLOAD", "encode_frame", "encode_object", "write_all"]

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size

# The host's first frame: it has finished its preload imports and can take calls.
READY_PAYLOAD = b"actors-host-ready"


def encode_frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length, ready for a single write."""
    return HEADER.pack(len(payload)) + payload


def encode_object(obj: object) -> bytes:
    """Pickle ``obj`` with cloudpickle (so lambdas/closures work) and frame it."""
    return encode_frame(cloudpickle.dumps(obj, protocol=cloudpickle.DEFAULT_PROTOCOL))


def write_all(fd: int, data: bytes) -> None:
    """Blocking write of all of ``data`` (used by the host, never in trio code)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
