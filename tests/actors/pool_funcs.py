"""Functions the process-pool tests run inside runner hosts.

They live in an importable module (not in the test module) so cloudpickle sends
them by reference and the host imports only this light module. Host-side code
is synchronous by nature, so blocking calls are fine here.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

_state: dict[str, object] = {}


def add(a: int, b: int) -> int:
    return a + b


def noop() -> None:
    return None


def fail_with_value_error(message: str) -> None:
    raise ValueError(message)


class TwoArgError(Exception):
    """An exception whose __init__ signature defeats plain pickling."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


def fail_with_two_arg_error() -> None:
    raise TwoArgError(7, "custom init")


def call_sys_exit() -> None:
    sys.exit(5)


def return_unpicklable() -> object:
    return threading.Lock()


def chatty(kib: int) -> str:
    """Write a lot to stdout and stderr by every route a job might use."""
    line = "x" * 1023
    for _ in range(kib):
        print(line)
    sys.stdout.flush()
    os.write(1, b"raw write to fd 1\n")
    subprocess.run(["echo", "a child process writing to its stdout"], check=True)
    print("and stderr", file=sys.stderr)
    return "still framed"


def segfault() -> None:
    ctypes.string_at(0)


def exit_with(code: int) -> None:
    os._exit(code)


def notify(fifo: str, text: str) -> None:
    """Tell the test something (one atomic line on a FIFO the test reads)."""
    with open(fifo, "w") as pipe:
        pipe.write(text + "\n")


def report_pid_and_hang(fifo: str) -> None:
    notify(fifo, str(os.getpid()))
    time.sleep(60)


def hang(seconds: float) -> None:
    time.sleep(seconds)


def spawn_grandchild_and_hang(fifo: str) -> None:
    child = subprocess.Popen(["sleep", "100"])
    notify(fifo, str(child.pid))
    time.sleep(60)


def rendezvous(fifo: str, gate: str, name: str) -> str:
    """Report arrival, then wait until the test opens the gate."""
    notify(fifo, name)
    deadline = time.monotonic() + 20
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: gate never opened")
        time.sleep(0.005)
    return name


def remember(key: str, value: object) -> int:
    _state[key] = value
    return os.getpid()


def recall(key: str) -> tuple[object, int]:
    return _state.get(key), os.getpid()


def getpid() -> int:
    return os.getpid()


def echo(value: object) -> object:
    return value


def hang_until_sigterm(fifo: str) -> None:
    """Exit cleanly on SIGTERM, after telling the test (proves a kill grace was given)."""
    import signal

    def on_term(signum: int, frame: object) -> None:
        notify(fifo, "terminated politely")
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    notify(fifo, "ready")
    time.sleep(60)


def allocate_without_bound(fifo: str) -> None:
    """Grow resident memory 16 MiB at a time (touched, so it is really resident) until killed;
    stops growing at 2 GiB and hangs, so a broken limit cannot take the machine down."""
    notify(fifo, "allocating")
    hoard = []
    for _ in range(128):
        hoard.append(bytearray(16 * 1024 * 1024))  # zero-filled: every page is touched
        time.sleep(0.01)
    time.sleep(600)


def spawn_grandchild_report_both_and_hang(fifo: str) -> None:
    """Start a child process, tell the test this host's pid and the child's, then hang."""
    child = subprocess.Popen(["sleep", "600"])
    notify(fifo, f"{os.getpid()} {child.pid}")
    time.sleep(600)


def _protocol_out_fd() -> int:
    """The host's private reply pipe: the one write-only pipe above stderr (see _host_main)."""
    import fcntl
    import stat

    for fd in range(3, 64):
        try:
            mode = os.fstat(fd).st_mode
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        except OSError:
            continue
        if stat.S_ISFIFO(mode) and flags & os.O_ACCMODE == os.O_WRONLY and not os.path.samestat(
                os.fstat(fd), os.fstat(2)):
            return fd
    raise RuntimeError("no protocol pipe found")


def write_garbage_frame() -> str:
    """Write a complete frame that is not a reply, ahead of the real reply."""
    os.write(_protocol_out_fd(), len(b"not a pickle").to_bytes(4, "big") + b"not a pickle")
    return "the real reply, too late"


def close_protocol_pipes() -> None:
    """Close every pipe to the parent and keep running (the parent must not wait for a reply)."""
    os.closerange(3, 64)
    time.sleep(600)


def allocate_in_a_child(fifo: str, from_thread: bool = False) -> None:
    """Start a process that takes 400 MiB of resident memory (as a command a job runs would),
    from this thread or from another one, tell the test its pid, and wait for it."""

    def start() -> None:
        child = subprocess.Popen([sys.executable, "-c",
                                  "import time; hoard = bytearray(400 * 1024 * 1024); time.sleep(600)"])
        notify(fifo, str(child.pid))
        child.wait()

    if not from_thread:
        start()
        return
    starter = threading.Thread(target=start)
    starter.start()
    starter.join()


def wait_for_cancel(fifo: str, name: str) -> str:
    """Report arrival, then wait (on a shared host) until the parent cancels this call."""
    from actors.hosted import on_cancel

    cancelled = threading.Event()
    on_cancel(cancelled.set)
    notify(fifo, f"{name} {os.getpid()}")
    if cancelled.wait(60):
        notify(fifo, f"{name} cancelled")
        return "cancelled"
    return "not cancelled"


def thread_name() -> str:
    return threading.current_thread().name


def allocate_in_a_reported_child(fifo: str) -> int:
    """Like a COMMAND job on a shared host: start a process that takes 400 MiB, report it to the
    host as this call's, and wait for it; returns its exit status."""
    from actors.hosted import started_process

    child = subprocess.Popen([sys.executable, "-c",
                              "import time; hoard = bytearray(400 * 1024 * 1024); time.sleep(600)"])
    started_process(child.pid)
    notify(fifo, str(child.pid))
    return child.wait()


def emit_chunks(chunks: list[bytes]) -> bool:
    """Emit each chunk (actors.hosted.emit); returns whether the caller takes them."""
    from actors import hosted

    for chunk in chunks:
        hosted.emit(chunk)
    return hosted.emitting()


def emit_then_wait_for(chunk: bytes, gate: str) -> str:
    """Emit one chunk, then wait until the test opens the gate: the test can open it only once
    it has the chunk, so the call returning proves the chunk arrived while the call ran."""
    from actors import hosted

    hosted.emit(chunk)
    deadline = time.monotonic() + 30
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the gate was never opened")
        time.sleep(0.005)
    return "done"


def emit_from_a_thread_of_its_own(chunk: bytes) -> bool:
    """A thread the call starts has no call: its emit does nothing."""
    from actors import hosted

    sent: list[bool] = []
    thread = threading.Thread(target=lambda: sent.append(hosted.emitting() or hosted.emit(chunk) is not None))
    thread.start()
    thread.join()
    return sent[0]
