"""`sleep`: a test runner plugin whose job does nothing but wait `ms` milliseconds. Args `{ms}`.

It exists so benchmarks can measure how many fixed-length jobs the server keeps running at once
(a 10 ms job at concurrency 100 is ideally 10 000 jobs/s), and so tests have a job that is
running for as long as they choose. Load it with `PLUGINS_RUNNER_DIR=plugins`, like `hello`.
It declares itself `concurrent`: its jobs run together on threads of one shared runner host, so
a blocking sleep is what it should do, and cancel() (from another thread) ends one early.
"""

from __future__ import annotations

import threading

from jobworkerp.runners.base import OtherError
from jobworkerp.runners.plugins import proto_messages

SETTINGS_PROTO = """syntax = "proto3";
package sleep;

message SleepRunnerSettings {
}
"""

ARGS_PROTO = """syntax = "proto3";
package sleep;

message SleepArgs {
  uint32 ms = 1;
}
"""


class SleepRunner:
    name = "sleep"
    concurrent = True  # runs on threads of a shared host; cancel() is thread-safe
    settings_proto = SETTINGS_PROTO
    args_proto = ARGS_PROTO
    result_proto = ""  # one plain UTF-8 output item: `slept N ms`

    def __init__(self) -> None:
        # An Event rather than time.sleep: cancel() can end a sleep early from another thread.
        self._cancelled = threading.Event()

    def load(self, settings: bytes) -> None:
        """No settings to read; the message is parsed only to refuse bytes that are not one."""
        proto_messages(SETTINGS_PROTO).SleepRunnerSettings.FromString(settings)

    def run(self, args: bytes) -> list[bytes]:
        try:
            ms = proto_messages(ARGS_PROTO).SleepArgs.FromString(args).ms
        except Exception as e:
            raise OtherError(f"args: not a sleep.SleepArgs message: {e}") from None
        self._cancelled.clear()
        if self._cancelled.wait(ms / 1000):
            raise OtherError(f"cancelled before {ms} ms had passed")
        return [f"slept {ms} ms".encode()]

    def cancel(self) -> None:
        """Wake a sleep in progress. The host also calls this before it reuses a static runner,
        which is why run() clears the flag before it waits."""
        self._cancelled.set()


RUNNERS = [SleepRunner]
