"""Entry point of a runner host process: ``python -m actors._host_main [preload ...]``, started
isolated by :func:`actors.isolation.python_command` (which has already set up ``sys.path``).

The host serves calls from its parent pool over stdin/stdout frames: one at a
time (an exclusive host), or, started with ``--shared``, many at once, each on a
thread of its own, with cancel requests between them (:mod:`actors.hosted`).
It deliberately imports neither trio nor the parent's application code (only
what the pickled calls and the preload list need), so it starts fast.

Host-local state (module globals of imported modules) survives between calls;
applications rely on that to keep per-host caches.
"""

from __future__ import annotations

import os
import signal
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


# Threads of a shared host. Its calls are bounded by the pool's callers (a channel's slots);
# beyond this many at once, calls wait for a thread.
SHARED_THREADS_MAX = 1024


def _serve_shared(reader: BinaryIO, proto_out: int) -> int:
    """Read requests and run each call on a pool thread; replies go out whole, under a lock."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from actors import _framing
    from actors._host_calls import serve_shared
    from actors.hosted import current_calls

    calls = current_calls()
    write_lock = threading.Lock()
    head = _framing.SHARED_HEAD

    def write(frame: bytes) -> None:
        with write_lock:
            _framing.write_all(proto_out, frame)

    def run(call_id: int, request: bytes) -> None:
        write(serve_shared(call_id, memoryview(request)[head.size:], calls, write))

    def report_process(call_id: int, pid: int) -> None:
        write(_framing.encode_frame(head.pack(call_id, _framing.PROCESS) + _framing.PID.pack(pid)))

    calls.report_process = report_process

    threads = ThreadPoolExecutor(SHARED_THREADS_MAX, thread_name_prefix="call")
    while True:
        request = _read_frame(reader, _framing.HEADER)
        if request is None:
            # The parent is gone or done with us: calls still running have no one to answer, and
            # what they started must not outlive us (see _parent_watch.py, which could lose the
            # race to this thread).
            os.killpg(os.getpgrp(), signal.SIGKILL)
            os._exit(0)  # not reached: the group includes this process
        call_id, kind = head.unpack_from(request)
        if kind == _framing.CANCEL:
            calls.cancel(call_id)
        else:
            threads.submit(run, call_id, request)


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
    shared = bool(argv) and argv[0] == _framing.SHARED_FLAG
    for module_name in argv[1:] if shared else argv:
        importlib.import_module(module_name)

    _framing.write_all(proto_out, _framing.encode_frame(_framing.READY_PAYLOAD))
    with open(proto_in, "rb", buffering=1 << 16) as reader:
        if shared:
            return _serve_shared(reader, proto_out)
        def write(frame: bytes) -> None:
            _framing.write_all(proto_out, frame)

        while True:
            request = _read_frame(reader, _framing.HEADER)
            if request is None:
                return 0
            write(serve_one(request, write))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
