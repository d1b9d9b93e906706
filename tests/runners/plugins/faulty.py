"""`faulty`: a test plugin that misbehaves on request, for the runner host's reliability tests.

Settings `{fail_load}`: load() raises when set. Args `{action, arg}`: `ok` echoes arg, `pid` returns the
host's pid, `fail` raises a plain exception, `retry` a RetryableError, `segfault` crashes the host,
`exit` calls os._exit, `hang` blocks until the host is killed.
"""

from __future__ import annotations

import ctypes
import os
import threading

from jobworkerp.runners.base import RetryableError
from jobworkerp.runners.plugins import proto_messages

SETTINGS_PROTO = """syntax = "proto3";
package faulty;

message FaultySettings {
  bool fail_load = 1;
}
"""

ARGS_PROTO = """syntax = "proto3";
package faulty;

message FaultyArgs {
  string action = 1;
  string arg = 2;
}
"""


class FaultyRunner:
    name = "faulty"
    settings_proto = SETTINGS_PROTO
    args_proto = ARGS_PROTO
    result_proto = None

    def load(self, settings: bytes) -> None:
        if proto_messages(SETTINGS_PROTO).FaultySettings.FromString(settings).fail_load:
            raise RuntimeError("load failed on request")

    def run(self, args: bytes) -> list[bytes]:
        parsed = proto_messages(ARGS_PROTO).FaultyArgs.FromString(args)
        action = parsed.action
        if action == "ok":
            return [parsed.arg.encode()]
        if action == "pid":
            return [str(os.getpid()).encode()]
        if action == "fail":
            raise ValueError("failed on request")
        if action == "retry":
            raise RetryableError("retry on request")
        if action == "segfault":
            ctypes.string_at(0)
        if action == "exit":
            os._exit(7)
        if action == "hang":
            threading.Event().wait()
        raise ValueError(f"unknown action {action!r}")


RUNNERS = [FaultyRunner]
