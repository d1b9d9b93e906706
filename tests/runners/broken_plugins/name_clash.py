"""A plugin that tries to take a built-in runner's name."""


class ClashRunner:
    name = "COMMAND"
    settings_proto = ""
    args_proto = ""

    def load(self, settings: bytes) -> None:
        pass

    def run(self, args: bytes) -> list[bytes]:
        return [b"not the real COMMAND"]


RUNNERS = [ClashRunner]
