"""Length-prefixed frames shared by the pool (parent) and the runner host.

A frame is a 4-byte big-endian payload length followed by the payload. This
module must stay free of trio imports because the host process uses it too.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import types
from typing import Any

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
    """``obj`` pickled: with the standard library's C pickler when every function and class it
    holds is one a host imports by name, else with cloudpickle (so lambdas, closures and
    `__main__`'s functions work).

    Why: cloudpickle's pickler runs Python code for every object it meets; a job's call (a
    module function, a few bytes and ints) took 10 µs through it and 4 µs through `pickle`, its
    reply 4 µs and 2 µs — and for such objects cloudpickle writes what `pickle` writes, since it
    pickles importable functions and classes by name too."""
    buffer = io.BytesIO()
    try:
        _ByNamePickler(buffer, protocol=cloudpickle.DEFAULT_PROTOCOL).dump(obj)
    except Exception:  # noqa: BLE001 - not for the plain pickler (_ByValue, or one it cannot do): cloudpickle's turn
        return cloudpickle.dumps(obj, protocol=cloudpickle.DEFAULT_PROTOCOL)
    return buffer.getvalue()


class _ByValue(Exception):
    """A function or class that must travel by value: the plain pickler stops, cloudpickle goes."""


_by_name: dict[object, bool] = {}  # function or class -> whether a host can import it by its name
_BY_NAME_MAX = 4096


class _ByNamePickler(pickle.Pickler):
    """The C pickler, refusing (`_ByValue`) any function or class a host could not import by the
    name it would write. It is asked about every object but plain values and containers, which
    it writes itself without asking."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (types.FunctionType, type)):
            known = _by_name.get(obj)
            if known is None:
                if len(_by_name) >= _BY_NAME_MAX:  # classes made at run time must not pile up here
                    _by_name.clear()
                known = _by_name[obj] = _importable_by_name(obj)
            if not known:
                raise _ByValue
        return NotImplemented


def _importable_by_name(obj: Any) -> bool:
    """Module-level, in a module a host imports by its name: not `__main__` (the host's is
    another), not a module made at run time (no spec), nothing nested (`<locals>`), nothing
    registered with cloudpickle to go by value."""
    module_name = getattr(obj, "__module__", None)
    if not isinstance(module_name, str) or module_name == "__main__":
        return False
    module = sys.modules.get(module_name)
    return (module is not None and getattr(module, "__spec__", None) is not None
            and "<" not in obj.__qualname__ and getattr(module, obj.__name__, None) is obj
            and not _registered_by_value(module_name))


def _registered_by_value(module_name: str) -> bool:
    by_value = getattr(cloudpickle.cloudpickle, "_PICKLE_BY_VALUE_MODULES", ())
    return any(module_name == name or module_name.startswith(name + ".") for name in by_value)


def encode_object(obj: object) -> bytes:
    """Pickle ``obj`` with cloudpickle and frame it."""
    return encode_frame(pickled(obj))


def write_all(fd: int, data: bytes) -> None:
    """Blocking write of all of ``data`` (used by the host, never in trio code)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
