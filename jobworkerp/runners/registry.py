"""The runners this server knows: ids, names, proto texts and where their code lives.

Built-in runners have fixed ids 1-4 (seeded in the runner table). A runner is referred to in a
runner host by `ref` ("module:Class") so nothing but a short string crosses the process pipe.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from jobworkerp.config import Config
from jobworkerp.proto.jobworkerp import data
from jobworkerp.runners import command

HTTP_SETTINGS_PROTO = """syntax = "proto3";
package jobworkerp.runner;

message HttpRequestRunnerSettings {
  string base_url = 1;
}
"""

HTTP_ARGS_PROTO = """syntax = "proto3";
package jobworkerp.runner;

message HttpRequestArgs {
  message KeyValue {
    string key = 1;
    string value = 2;
  }
  repeated KeyValue headers = 1;
  string method = 2;
  string path = 3;
  optional string body = 4;
  repeated KeyValue queries = 5;
}
"""

HTTP_RESULT_PROTO = """syntax = "proto3";
package jobworkerp.runner;

message HttpRequestResult {
  uint32 status_code = 1;
  message KeyValue {
    string key = 1;
    string value = 2;
  }
  repeated KeyValue headers = 2;
  string content = 3;
}
"""

GRPC_SETTINGS_PROTO = """syntax = "proto3";
package jobworkerp.runner;

message GrpcUnaryRunnerSettings {
  string url = 1;
  string path = 2;
}
"""

DOCKER_SETTINGS_PROTO = """syntax = "proto3";
package jobworkerp.runner;

message DockerRunnerSettings {
  optional string from_image = 1;
  optional string from_src = 2;
  optional string repo = 3;
  optional string tag = 4;
  optional string platform = 5;
  repeated string env = 7;
  repeated string volumes = 8;
  optional string working_dir = 9;
  repeated string entrypoint = 10;
}
"""

DOCKER_ARGS_PROTO = """syntax = "proto3";
package jobworkerp.runner;

message DockerArgs {
  optional string image = 1;
  optional string user = 2;
  repeated string exposed_ports = 3;
  repeated string env = 4;
  repeated string cmd = 5;
  optional bool args_escaped = 6;
  repeated string volumes = 7;
  optional string working_dir = 8;
  repeated string entrypoint = 9;
  optional bool network_disabled = 10;
  optional string mac_address = 11;
  repeated string shell = 12;
}
"""


@dataclass(frozen=True)
class RunnerSpec:
    """What the server needs to know about a runner without loading its code."""

    id: int
    name: str
    runner_type: data.RunnerType
    file_name: str
    settings_proto: str
    args_proto: str
    result_proto: str | None
    settings_message: str | None  # full protobuf name, to validate worker settings in the server
    ref: str | None  # "module:Class" loaded inside a runner host; None = not available yet

    def to_runner(self) -> data.Runner:
        return data.Runner(
            id=data.RunnerId(value=self.id),
            data=data.RunnerData(
                name=self.name,
                runner_type=self.runner_type,
                runner_settings_proto=self.settings_proto,
                job_args_proto=self.args_proto,
                result_output_proto=self.result_proto,
            ),
        )


BUILTIN_RUNNERS: tuple[RunnerSpec, ...] = (
    RunnerSpec(1, "COMMAND", data.RunnerType.COMMAND, "builtin1", command.SETTINGS_PROTO, command.ARGS_PROTO, "",
               "jobworkerp.runner.CommandRunnerSettings", "jobworkerp.runners.command:CommandRunner"),
    RunnerSpec(2, "HTTP_REQUEST", data.RunnerType.HTTP_REQUEST, "builtin2", HTTP_SETTINGS_PROTO, HTTP_ARGS_PROTO,
               HTTP_RESULT_PROTO, "jobworkerp.runner.HttpRequestRunnerSettings", None),
    RunnerSpec(3, "GRPC_UNARY", data.RunnerType.GRPC_UNARY, "builtin3", GRPC_SETTINGS_PROTO, "", None,
               "jobworkerp.runner.GrpcUnaryRunnerSettings", None),
    RunnerSpec(4, "DOCKER", data.RunnerType.DOCKER, "builtin4", DOCKER_SETTINGS_PROTO, DOCKER_ARGS_PROTO, "",
               "jobworkerp.runner.DockerRunnerSettings", None),
)


class RunnerRegistry:
    """Runner specs by id (built-ins now; plugins register here too)."""

    @classmethod
    def from_config(cls, config: Config) -> RunnerRegistry:
        """The built-in runners plus the plugins found where the config says."""
        return cls()

    def __init__(self, specs: tuple[RunnerSpec, ...] = BUILTIN_RUNNERS) -> None:
        self._by_id = {spec.id: spec for spec in specs}

    def get(self, runner_id: int) -> RunnerSpec | None:
        return self._by_id.get(runner_id)

    def register(self, spec: RunnerSpec) -> None:
        self._by_id[spec.id] = spec

    def all(self) -> list[RunnerSpec]:
        return sorted(self._by_id.values(), key=lambda s: s.id, reverse=True)


def load_runner_class(ref: str) -> type:
    """Import "module:Class" (runs inside a runner host)."""
    module_name, _, class_name = ref.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
