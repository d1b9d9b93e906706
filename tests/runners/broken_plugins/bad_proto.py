"""A plugin whose settings proto does not compile: RunnerService could not advertise it."""


class BadProtoRunner:
    name = "bad_proto"
    settings_proto = "syntax = \"proto3\";\nmessage Broken { strin name = 1; }\n"
    args_proto = ""
    result_proto = None

    def load(self, settings: bytes) -> None:
        pass

    def run(self, args: bytes) -> list[bytes]:
        return []


RUNNERS = [BadProtoRunner]
