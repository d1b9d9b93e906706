"""Entry point of a runner host process: ``python -m actors._host_main [preload ...]``, started
isolated by :func:`actors.isolation.python_command` (which has already set up ``sys.path``).

The host serves calls from its parent pool over stdin/stdout frames, one at a
time. It deliberately imports neither trio nor the parent's application code
(only what the pickled calls and the preload list need), so it starts fast.

Host-local state (module globals of imported modules) survives between calls;
applications rely on that to keep per-host caches.
"""

from __future__ import annotations

import os
import struct
import sys
from typing import BinaryIO


def _take_protocol_fds() -> tuple[int, int]:
    """Move the protocol pipes to private fds before anything can write to fd 1.

    Afterwards fd 0 is /dev/null and fd 1 is the stderr pipe, so ``print()``, a
    stray ``input()`` or a child process inheriting the standard fds cannot
    corrupt or steal protocol frames. ``os.dup`` makes non-inheritable fds, so
    child processes do not get the protocol pipes either.
    """
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.stdin = open(os.devnull)  # lives as long as the process
    return proto_in, proto_out


def _read_frame(reader: BinaryIO, header: struct.Struct) -> bytes | None:
    """Read one frame; None on a clean EOF (the parent closed the pipe)."""
    prefix = reader.read(header.size)
    if len(prefix) < header.size:
        return None
    (length,) = header.unpack(prefix)
    payload = reader.read(length)
    if len(payload) < length:
        return None
    return payload


def main(argv: list[str]) -> int:
    """Set up the host, report ready, then serve calls until stdin closes."""
    proto_in, proto_out = _take_protocol_fds()

    from actors._parent_watch import die_with_parent

    die_with_parent(proto_in)

    import faulthandler

    faulthandler.enable(all_threads=True)

    import importlib

    from tblib import pickling_support

    from actors import _framing
    from actors._host_calls import serve_one

    pickling_support.install()
    for module_name in argv:
        importlib.import_module(module_name)

    _framing.write_all(proto_out, _framing.encode_frame(_framing.READY_PAYLOAD))
    with open(proto_in, "rb", buffering=1 << 16) as reader:
        while True:
            request = _read_frame(reader, _framing.HEADER)
            if request is None:
                return 0
            _framing.write_all(proto_out, serve_one(request))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
