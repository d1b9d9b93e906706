"""Length-prefixed frames shared by the pool (parent) and the runner host.

A frame is a 4-byte big-endian payload length followed by the payload. This
module must stay free of trio imports because the host process uses it too.
"""

from __future__ import annotations

import os
import struct

import cloudpickle

__all__ = ["HEADER", "READY_PAYLOAD", "SHARED_FLAG", "SHARED_HEAD", "encode_frame", "encode_object", "pickled",
           "write_all"]

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size

# The host's first frame: it has finished its preload imports and can take calls.
READY_PAYLOAD = b"actors-host-ready"

# The host's first argument when it runs many calls at once, each on a thread of its own.
SHARED_FLAG = "--shared"

# A shared host's frames name their call outside the pickle, so a reply reaches its caller (and
# a garbage reply fails only its own call) without unpickling it first: each starts with the call
# id and a kind byte. Requests: RUN (followed by the pickled call) or CANCEL (nothing follows).
# From the host: REPLY (followed by the pickled reply) or PROCESS (the call started the process
# whose pid follows, 8 bytes, so the parent can hold it to the memory limit on its own), or EMIT
# (a chunk of output the call sent while running, `hosted.emit`: the raw bytes follow).
SHARED_HEAD = struct.Struct(">Qc")
RUN = b"R"
CANCEL = b"C"
REPLY = b"A"
PROCESS = b"P"
EMIT = b"E"
PID = struct.Struct(">Q")

# An exclusive host's frames carry no head: one call at a time, and its reply is the only frame.
# A call whose caller takes emitted chunks (`ProcessPool.run(..., on_emit=...)`) may also send
# chunk frames before its reply: EMIT, then the chunk. The reply stays a bare pickle, which always
# starts with the PROTO opcode (0x80, pickle protocol 2 and later), never with EMIT, so nothing
# else changes and calls without a taker pay nothing for the feature.


def encode_frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length, ready for a single write."""
    return HEADER.pack(len(payload)) + payload


def pickled(obj: object) -> bytes:
    """``obj`` pickled with cloudpickle (so lambdas and closures work)."""
    return cloudpickle.dumps(obj, protocol=cloudpickle.DEFAULT_PROTOCOL)


def encode_object(obj: object) -> bytes:
    """Pickle ``obj`` with cloudpickle and frame it."""
    return encode_frame(pickled(obj))


def write_all(fd: int, data: bytes) -> None:
    """Blocking write of all of ``data`` (used by the host, never in trio code)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
