"""A runner that counts how often it is created and loaded (for runner-host tests)."""

from __future__ import annotations

loads: list[bytes] = []


class CountingRunner:
    name = "COUNTING"

    def __init__(self) -> None:
        self.settings = b""
        self.runs = 0
        self.cancels = 0

    def load(self, settings: bytes) -> None:
        loads.append(settings)
        self.settings = settings

    def run(self, args: bytes) -> list[bytes]:
        self.runs += 1
        return [self.settings, args, str(self.runs).encode()]

    def cancel(self) -> None:
        self.cancels += 1


class BrokenRunner(CountingRunner):
    def load(self, settings: bytes) -> None:
        raise KeyError("no such thing")
