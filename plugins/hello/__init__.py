"""`hello`: the example runner plugin. Settings `{name}`, args `{arg}`; one output item `SUCCESS: arg=...`.

A plugin is a class with a name, three .proto texts, `load(settings)` and `run(args)`, listed in
the module's `RUNNERS`. Put this directory's parent in PLUGINS_RUNNER_DIR (`PLUGINS_RUNNER_DIR=plugins`)
or ship the class in a package with an entry point in the group `jobworkerp.runners`.
It runs inside a runner host process, so blocking code is fine.

`run_stream` is optional: a job enqueued for streaming (JobStreamService) runs it instead of `run`,
and each chunk it yields reaches the job's listeners as it is yielded; the job's output is then
one item, the chunks joined (here the same `SUCCESS: arg=...` as `run` gives).
"""

from __future__ import annotations

from collections.abc import Iterator

from jobworkerp.runners.base import OtherError
from jobworkerp.runners.plugins import proto_messages

SETTINGS_PROTO = """syntax = "proto3";
package hello;

message HelloRunnerSettings {
  string name = 1;
}
"""

ARGS_PROTO = """syntax = "proto3";
package hello;

message HelloArgs {
  string arg = 1;
}
"""


class HelloRunner:
    name = "hello"
    settings_proto = SETTINGS_PROTO
    args_proto = ARGS_PROTO
    result_proto = ""  # output items are plain UTF-8 text

    def __init__(self) -> None:
        self._name = ""

    def load(self, settings: bytes) -> None:
        # A failure here (an exception) makes the job FATAL_ERROR with the reason.
        self._name = proto_messages(SETTINGS_PROTO).HelloRunnerSettings.FromString(settings).name

    def run(self, args: bytes) -> list[bytes]:
        return [f"SUCCESS: arg={self._arg(args)}".encode()]

    def run_stream(self, args: bytes) -> Iterator[bytes]:
        """The same output in two chunks, each sent as soon as it is yielded."""
        arg = self._arg(args)
        yield b"SUCCESS: "
        yield f"arg={arg}".encode()

    def _arg(self, args: bytes) -> str:
        try:
            return str(proto_messages(ARGS_PROTO).HelloArgs.FromString(args).arg)
        except Exception as e:
            raise OtherError(f"args: not a hello.HelloArgs message: {e}") from None

    def cancel(self) -> None:
        """Nothing to reset between jobs."""


RUNNERS = [HelloRunner]
