"""COMMAND runner: run an executable directly (no shell) with the job's arguments.

Departure from upstream: a non-zero exit code is a failure (ERROR_AND_RETRY) whose output is
the exit status and stderr; on success the output is stdout.
"""

from __future__ import annotations

import subprocess
from typing import ClassVar

from jobworkerp.config import ConfigError
from jobworkerp.proto.jobworkerp.data import RunnerType
from jobworkerp.proto.jobworkerp.runner import CommandArgs, CommandRunnerSettings
from jobworkerp.runners.base import FatalError, OtherError, RetryableError, RunnerLoadError, describe_exit
from jobworkerp.runners.policy import PolicyViolation, RunnerPolicy

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


class CommandRunner:
    name: ClassVar[str] = "COMMAND"
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
        try:
            self._proc = subprocess.Popen(
                [self._command, *argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as e:
            raise RetryableError(f"cannot start command {self._command!r}: {e}") from None
        try:
            stdout, stderr = self._proc.communicate()
        finally:
            returncode = self._proc.wait()
            self._proc = None
        if returncode != 0:
            tail = stderr[-STDERR_LIMIT:].decode("utf-8", "replace")
            raise RetryableError(f"command {self._command!r} failed: {describe_exit(returncode)}\n{tail}")
        return [stdout]

    def cancel(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
