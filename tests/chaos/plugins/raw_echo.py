"""`raw_echo`: a test plugin whose job args are raw bytes (no args proto) and whose one output item
is those bytes unchanged, so a test can send any bytes through a job and compare what comes back."""

from __future__ import annotations


class RawEchoRunner:
    name = "raw_echo"
    settings_proto = ""
    args_proto = ""  # raw bytes: the server passes any args unchecked
    result_proto = None

    def load(self, settings: bytes) -> None:
        """No settings."""

    def run(self, args: bytes) -> list[bytes]:
        return [args]

    def cancel(self) -> None:
        """Nothing to reset between jobs."""


RUNNERS = [RawEchoRunner]
