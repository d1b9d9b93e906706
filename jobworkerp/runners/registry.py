"""The runners this server knows: ids, names, proto texts and where their code lives.

Built-in runners have fixed ids 1-4 (seeded in the runner table). Plugins are found at start
(`RunnerRegistry.from_config`) and get their ids when their rows are seeded (`Runners.seed`): the id
of the existing row with the same name, else a new snowflake, so a plugin keeps its id across
restarts. A runner is referred to in a runner host by `ref` ("module:Class", or "plugin:<target>"
for plugins) so nothing but a short string crosses the process pipe.

The built-in proto texts live here rather than in the runner modules so that the server (and a
runner host that only runs COMMAND) never imports httpx, grpclib or the Docker client.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobworkerp.config import Config
from jobworkerp.proto.jobworkerp import data
from jobworkerp.runners import command

if TYPE_CHECKING:
    from jobworkerp.runners.plugin_discovery import PluginSpec

log = logging.getLogger(__name__)

MAX_FILE_NAME = 512  # runner.file_name column width (MySQL schema)

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
    settings_message: str | None  # full protobuf name in the committed descriptor set, or None to skip
    ref: str | None  # "module:Class" loaded inside a runner host; None = not available yet
    # Plugins: (full name, compiled FileDescriptorSet) of their settings message, for check_settings.
    plugin_settings: tuple[str, bytes] | None = None
    # The job args message, for check_args: a built-in's in the committed set, or a plugin's compiled one.
    args_message: str | None = None
    plugin_args: tuple[str, bytes] | None = None
    # Jobs run together on the shared runner host (runners/base.py `concurrent`), not one per host.
    concurrent: bool = False

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

    @property
    def settings_type(self) -> str | None:
        """Full name of the settings message that check_settings enforces (None: anything goes)."""
        return _type_name(self.settings_message, self.plugin_settings)

    @property
    def args_type(self) -> str | None:
        """Full name of the args message that check_args enforces (None: raw bytes, anything goes)."""
        return _type_name(self.args_message, self.plugin_args)

    def check_settings(self, payload: bytes) -> None:
        """Raise ValueError when `payload` does not parse as this runner's settings message."""
        _check_message(self.settings_message, self.plugin_settings, payload)

    def check_args(self, payload: bytes) -> None:
        """Raise ValueError when `payload` does not parse as this runner's job args message.

        Checked at Enqueue, so bad args are refused to the caller instead of running as an empty
        message (betterproto2, which the runners parse with, tolerates garbage).
        """
        _check_message(self.args_message, self.plugin_args, payload)


def _type_name(builtin: str | None, compiled: tuple[str, bytes] | None) -> str | None:
    """The message name `_check_message` enforces for the same pair, for error messages."""
    if builtin is not None:
        return builtin
    return compiled[0] if compiled is not None else None


def _check_message(builtin: str | None, compiled: tuple[str, bytes] | None, payload: bytes) -> None:
    """Raise ValueError when `payload` is not a valid message of the given type.

    Built-ins name a message of the committed descriptor set; plugins bring their own compiled
    proto; with neither (no such message) anything is accepted. Imported on use: runner hosts
    import this module for load_runner_class and never validate.
    """
    from jobworkerp.descriptors import check_message_bytes, check_parses

    if builtin is not None:
        check_message_bytes(builtin, payload)
    elif compiled is not None:
        from jobworkerp.runners.proto_text import message_class

        full_name, descriptor_set = compiled
        check_parses(message_class(descriptor_set, full_name), payload)


def _compiled(full_name: str | None, descriptor_set: bytes | None) -> tuple[str, bytes] | None:
    """A plugin message to check against, or None when its proto declares none (nothing to check)."""
    return (full_name, descriptor_set) if full_name and descriptor_set else None


def plugin_runner_spec(plugin: PluginSpec, runner_id: int = 0) -> RunnerSpec:
    """The RunnerSpec of a discovered plugin; id 0 until seeding assigns one."""
    file_name = f"{plugin.name}@{plugin.target}"[:MAX_FILE_NAME]  # unique: names are unique and short
    return RunnerSpec(
        runner_id, plugin.name, data.RunnerType.PLUGIN, file_name, plugin.settings_proto,
        plugin.args_proto, plugin.result_proto, None, plugin.ref,
        plugin_settings=_compiled(plugin.settings_message, plugin.settings_descriptor),
        plugin_args=_compiled(plugin.args_message, plugin.args_descriptor),
        concurrent=plugin.concurrent,
    )


BUILTIN_RUNNERS: tuple[RunnerSpec, ...] = (
    RunnerSpec(1, "COMMAND", data.RunnerType.COMMAND, "builtin1", command.SETTINGS_PROTO, command.ARGS_PROTO, "",
               "jobworkerp.runner.CommandRunnerSettings", "jobworkerp.runners.command:CommandRunner",
               args_message="jobworkerp.runner.CommandArgs", concurrent=True),
    RunnerSpec(2, "HTTP_REQUEST", data.RunnerType.HTTP_REQUEST, "builtin2", HTTP_SETTINGS_PROTO, HTTP_ARGS_PROTO,
               HTTP_RESULT_PROTO, "jobworkerp.runner.HttpRequestRunnerSettings",
               "jobworkerp.runners.http_request:HttpRequestRunner", args_message="jobworkerp.runner.HttpRequestArgs",
               concurrent=True),
    # GRPC_UNARY's args are the raw request bytes of the called method: no message to check.
    RunnerSpec(3, "GRPC_UNARY", data.RunnerType.GRPC_UNARY, "builtin3", GRPC_SETTINGS_PROTO, "", None,
               "jobworkerp.runner.GrpcUnaryRunnerSettings", "jobworkerp.runners.grpc_unary:GrpcUnaryRunner",
               concurrent=True),
    RunnerSpec(4, "DOCKER", data.RunnerType.DOCKER, "builtin4", DOCKER_SETTINGS_PROTO, DOCKER_ARGS_PROTO, "",
               "jobworkerp.runner.DockerRunnerSettings", "jobworkerp.runners.docker:DockerRunner",
               args_message="jobworkerp.runner.DockerArgs", concurrent=True),
)


class RunnerRegistry:
    """Runner specs by id: the built-ins, plus plugins once seeding has given them ids."""

    @classmethod
    def from_config(cls, config: Config) -> RunnerRegistry:
        """The built-in runners plus the plugins found in PLUGINS_RUNNER_DIR and the entry points.

        A plugin that cannot be imported or described is logged and skipped; it never stops the server.
        """
        from jobworkerp.runners import plugin_discovery
        from jobworkerp.runners.environment import runner_env_allowlist

        found = plugin_discovery.discover(config.plugins_runner_dir, reserved_names=[s.name for s in BUILTIN_RUNNERS],
                                          env_allowlist=runner_env_allowlist(config))
        for problem in found.problems:
            log.error("%s", problem)
        for plugin in found.plugins:
            log.info("plugin runner %r found in %s", plugin.name, plugin.source)
        return cls(pending_plugins=[plugin_runner_spec(p) for p in found.plugins])

    def __init__(self, specs: tuple[RunnerSpec, ...] = BUILTIN_RUNNERS,
                 pending_plugins: list[RunnerSpec] | None = None) -> None:
        self._by_id = {spec.id: spec for spec in specs}
        self._pending = list(pending_plugins or ())

    def get(self, runner_id: int) -> RunnerSpec | None:
        return self._by_id.get(runner_id)

    def register(self, spec: RunnerSpec) -> None:
        self._by_id[spec.id] = spec

    def all(self) -> list[RunnerSpec]:
        return sorted(self._by_id.values(), key=lambda s: s.id, reverse=True)

    def pending_plugins(self) -> list[RunnerSpec]:
        """Discovered plugins still waiting for an id (see Runners.seed)."""
        return list(self._pending)

    def assign(self, spec: RunnerSpec, runner_id: int) -> RunnerSpec:
        """Give a pending plugin its id and make it available."""
        assigned = dataclasses.replace(spec, id=runner_id)
        self._pending = [p for p in self._pending if p.name != spec.name]
        self.register(assigned)
        return assigned


def load_runner_class(ref: str) -> Callable[[], Any]:
    """What a runner host instantiates for `ref`: "module:Class", or "plugin:<target>" (wrapped)."""
    if ref.startswith("plugin:"):
        from jobworkerp.runners.plugins import plugin_factory

        return plugin_factory(ref[len("plugin:"):])
    module_name, _, class_name = ref.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
