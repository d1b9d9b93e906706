"""COMMAND runner: run an executable directly (no shell) with the job's arguments.

Departure from upstream: a non-zero exit code is a failure (ERROR_AND_RETRY) whose output is
the exit status and stderr; on success the output is stdout. Stdout is read as it comes and the
command is killed once it passes JOB_OUTPUT_MAX_BYTES (the job fails, `output_limit`); of stderr
only the last STDERR_LIMIT bytes are kept, so neither can fill the runner host's memory. A job
enqueued for streaming also sends its stdout line by line as it comes (`streaming.py`).
"""

from __future__ import annotations

import os
import selectors
import subprocess
from typing import ClassVar

from actors.hosted import cancelled, emitting, kill_tree, started_process
from jobworkerp.config import ConfigError
from jobworkerp.proto.jobworkerp.data import RunnerType
from jobworkerp.proto.jobworkerp.runner import CommandArgs, CommandRunnerSettings
from jobworkerp.runners.base import FatalError, OtherError, RetryableError, RunnerLoadError, describe_exit
from jobworkerp.runners.output_limit import CappedBuffer, output_limit
from jobworkerp.runners.policy import PolicyViolation, RunnerPolicy
from jobworkerp.runners.streaming import LineChunks
from jobworkerp.tracing.host import child_environment

SETTINGS_PROTO = """syntax = "proto3";
package jobworkerp.runner;

message CommandRunnerSettings {
  string name = 1;
}
"""

ARGS_PROTO = """syntax = "proto3";
package jobworkerp.runner;

message CommandArgs {
  repeated string args = 1;
}
"""

STDERR_LIMIT = 64 * 1024
READ_CHUNK = 64 * 1024


def read_output(proc: subprocess.Popen[bytes], stdout: CappedBuffer, lines: LineChunks | None = None) -> bytes:
    """Read the process's stdout into `stdout` and its stderr, both until they close; returns the
    last STDERR_LIMIT bytes of stderr. Raises OutputTooLarge (the process still running) as soon
    as stdout passes its limit. Both pipes are read together, so a command that fills one while
    we wait on the other never blocks. With `lines` (a job enqueued for streaming), stdout is
    also sent line by line as it comes, never past the limit (`runners/streaming.py`)."""
    assert proc.stdout is not None and proc.stderr is not None
    stderr = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        selector.register(proc.stderr, selectors.EVENT_READ)
        while selector.get_map():
            for key, _ in selector.select():
                chunk = os.read(key.fd, READ_CHUNK)
                if not chunk:
                    selector.unregister(key.fileobj)
                    if lines is not None and key.fileobj is proc.stdout:
                        lines.close()
                elif key.fileobj is proc.stdout:
                    stdout.add(chunk)
                    if lines is not None:
                        lines.feed(chunk)
                else:
                    stderr += chunk
                    if len(stderr) > 2 * STDERR_LIMIT:
                        del stderr[:-STDERR_LIMIT]
    return bytes(stderr[-STDERR_LIMIT:])


class CommandRunner:
    name: ClassVar[str] = "COMMAND"
    concurrent: ClassVar[bool] = True
    runner_type: ClassVar[RunnerType] = RunnerType.COMMAND
    settings_proto: ClassVar[str] = SETTINGS_PROTO
    args_proto: ClassVar[str] = ARGS_PROTO
    result_proto: ClassVar[str | None] = ""

    def __init__(self) -> None:
        self._command = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def load(self, settings: bytes) -> None:
        try:
            parsed = CommandRunnerSettings.parse(settings)
        except Exception as e:
            raise RunnerLoadError(f"runner_settings: not a CommandRunnerSettings message: {e}") from None
        if not parsed.name:
            raise RunnerLoadError("runner_settings.name: the command to run is empty")
        self._command = parsed.name

    def run(self, args: bytes) -> list[bytes]:
        try:
            argv = CommandArgs.parse(args).args
        except Exception as e:
            raise OtherError(f"args: not a CommandArgs message: {e}") from None
        try:
            # Whatever the server checked: a worker stored before the allowlist was set, or by a
            # process with a looser config, must not get past the runner that execs.
            RunnerPolicy.from_environment().check_command(self._command, "runner_settings.name")
        except (PolicyViolation, ConfigError) as e:
            raise FatalError(str(e)) from None
        stdout = CappedBuffer(output_limit(), f"the stdout of command {self._command!r}")
        try:
            self._proc = subprocess.Popen(
                [self._command, *argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=child_environment(),  # with TRACEPARENT when the job is traced (jobworkerp/tracing/host.py)
            )
        except OSError as e:
            raise RetryableError(f"cannot start command {self._command!r}: {e}") from None
        proc = self._proc
        try:
            started_process(proc.pid)  # so a memory limit kills this command alone (actors/hosted.py)
            if cancelled():  # the cancel came before there was a process for cancel() to kill
                kill_tree(proc.pid)
            stderr = read_output(proc, stdout, LineChunks() if emitting() else None)
        except BaseException:
            proc.kill()  # over the limit (or the host is going away): nothing more is read
            raise
        finally:
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            returncode = proc.wait()
            self._proc = None
        if returncode != 0:
            tail = stderr.decode("utf-8", "replace")
            raise RetryableError(f"command {self._command!r} failed: {describe_exit(returncode)}\n{tail}")
        return [bytes(stdout.data)]

    def cancel(self) -> None:
        """Kill the command and whatever it started (called from another thread in a shared host).
        Not `poll()`: reaping belongs to the thread running the job."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            kill_tree(proc.pid)
