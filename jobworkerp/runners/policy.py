"""What a job may do to the host it runs on: which built-in runners are offered, which executables
COMMAND may start, which host paths and images DOCKER may use, and the limits of its containers.

Why: anyone holding the server's token can create workers and enqueue jobs. Without a policy a
COMMAND worker runs any executable and a DOCKER job mounts any host path (`/:/host`, the engine's
socket) or pulls any image -- the token would be root on the host.

Checked in three places, each for its own reason:
- at worker create/update (`usecase/workers.py`), so a bad definition is refused with
  INVALID_ARGUMENT naming its field instead of failing every job later;
- at Enqueue (`usecase/jobs.py`), for the job's args, and for workers stored before the policy
  was tightened;
- inside the runner host right before the command or container starts (`host.py`, `command.py`,
  `docker.py`), so nothing that bypassed the front (an old worker, a queued job, another
  process sharing the database with a looser config) runs unchecked.

The runner host reads the policy from its environment (`RunnerPolicy.from_environment`); the
server hands its hosts the values it resolved itself (`host_environment`), so settings that came
from `.env` reach them too.

Departure from upstream, which has none of this. Defaults keep upstream's behaviour except that
DOCKER bind mounts are refused unless DOCKER_ALLOWED_BINDS lists their host paths, and every
container gets (generous) memory, pid and CPU limits.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from jobworkerp.config import BUILTIN_RUNNER_NAMES, Config, environment_config
from jobworkerp.proto.jobworkerp.runner import CommandRunnerSettings, DockerArgs, DockerRunnerSettings
from jobworkerp.runners.docker_config import ImageSource

MIB = 1024 * 1024


class PolicyViolation(ValueError):
    """A worker definition or job breaks the runner policy; `field` names what to change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _listed(values: Iterable[str]) -> str:
    return ", ".join(values) or "nothing"


@dataclass(frozen=True)
class RunnerPolicy:
    """The policy settings of a Config, with the checks that enforce them (see the module doc)."""

    runners_enabled: tuple[str, ...] | None = None
    command_allowlist: tuple[str, ...] | None = None
    docker_allowed_binds: tuple[str, ...] = ()
    docker_allowed_images: tuple[str, ...] | None = None
    docker_memory_limit_mb: int = 0
    docker_pids_limit: int = 0
    docker_cpus: float = 0.0

    @classmethod
    def from_config(cls, config: Config) -> RunnerPolicy:
        return cls(config.runners_enabled, config.command_allowlist, config.docker_allowed_binds,
                   config.docker_allowed_images, config.docker_memory_limit_mb, config.docker_pids_limit,
                   config.docker_cpus)

    @classmethod
    def from_environment(cls) -> RunnerPolicy:
        """The policy a runner host enforces: the variables of its own environment.

        Read per job rather than once, so a runner used outside a pool sees the environment it
        runs in. A malformed variable raises ConfigError, which runners treat as a refusal.
        """
        return cls.from_config(environment_config())

    # --- which runner ---------------------------------------------------------------------------
    def check_runner(self, name: str, field: str = "runner_id") -> None:
        """Refuse a built-in runner that RUNNERS_ENABLED leaves out (plugins are not governed by
        it: PLUGINS_RUNNER_DIR already says which ones exist)."""
        if self.runners_enabled is None or name not in BUILTIN_RUNNER_NAMES or name in self.runners_enabled:
            return
        raise PolicyViolation(field, f"runner {name} is disabled on this server "
                                     f"(RUNNERS_ENABLED: {_listed(self.runners_enabled)})")

    def check_worker(self, runner_name: str, settings: bytes, prefix: str = "") -> None:
        """A worker definition of runner `runner_name` (settings already parse as its message).

        `prefix` ("worker." at Enqueue) makes the field name say that the stored worker is at fault.
        """
        self.check_runner(runner_name, f"{prefix}runner_id")
        if runner_name == "COMMAND":
            self.check_command(CommandRunnerSettings.parse(settings).name, f"{prefix}runner_settings.name")
        elif runner_name == "DOCKER":
            self.check_docker_settings(DockerRunnerSettings.parse(settings), f"{prefix}runner_settings")

    def check_job(self, runner_name: str, settings: bytes, args: bytes) -> None:
        """A job about to be accepted: its worker's definition as it is stored, and its args."""
        self.check_worker(runner_name, settings, prefix="worker.")
        if runner_name == "DOCKER":
            self.check_docker_args(DockerArgs.parse(args))

    # --- COMMAND --------------------------------------------------------------------------------
    def check_command(self, command: str, field: str) -> None:
        """The executable must be listed exactly as written: a bare name (found on the runner
        host's PATH, which clients cannot change) or an absolute path. No normalisation: `..` or
        a symlinked directory in a client's path could name another file than the one listed."""
        if self.command_allowlist is None or command in self.command_allowlist:
            return
        raise PolicyViolation(field, f"{command!r} is not an allowed executable "
                                     f"(COMMAND_ALLOWLIST: {_listed(self.command_allowlist)})")

    # --- DOCKER ---------------------------------------------------------------------------------
    def check_docker_settings(self, settings: DockerRunnerSettings, field: str = "runner_settings") -> None:
        for i, entry in enumerate(settings.volumes):
            self.check_volume(entry, f"{field}.volumes[{i}]")
        if settings.from_src and self.docker_allowed_images is not None:
            # An import takes its content from a URL: an allowed name would prove nothing about it.
            raise PolicyViolation(f"{field}.from_src", "image imports are refused while DOCKER_ALLOWED_IMAGES is set")
        try:
            ref = ImageSource.from_settings(settings).ref
        except ValueError:
            return  # from_src without repo: no image at all; the runner refuses it at load
        if ref is not None:
            self.check_image(ref, f"{field}.from_image" if settings.from_image else f"{field}.repo")

    def check_docker_args(self, args: DockerArgs, field: str = "args") -> None:
        for i, entry in enumerate(args.volumes):
            self.check_volume(entry, f"{field}.volumes[{i}]")
        if args.image:
            self.check_image(args.image, f"{field}.image")

    def check_image(self, ref: str, field: str) -> None:
        """The reference as the engine gets it must match a DOCKER_ALLOWED_IMAGES pattern (before
        anything is pulled). Patterns are fnmatch, case-sensitive; `*` also matches `/`."""
        patterns = self.docker_allowed_images
        if patterns is None or any(fnmatchcase(ref, pattern) for pattern in patterns):
            return
        raise PolicyViolation(field, f"image {ref!r} is not allowed (DOCKER_ALLOWED_IMAGES: {_listed(patterns)})")

    def check_volume(self, entry: str, field: str) -> None:
        """One `volumes` entry. A bare container path is an anonymous volume: new, empty, removed
        with its container, so always allowed. `host:container[:mode]` is a bind mount, allowed
        only when the host path, resolved (symlinks and `..`) on this machine, lies inside a
        resolved DOCKER_ALLOWED_BINDS path. `name:container` is a named volume, allowed only when
        listed by name: it outlives the job, is shared with whatever else mounts it, and one
        created with driver options can itself be a bind of any host path."""
        if ":" not in entry:
            return
        source = entry.partition(":")[0]
        allowed = self.docker_allowed_binds
        if not source.startswith("/"):
            if source in allowed:
                return
            raise PolicyViolation(field, f"named volume {source!r} is not listed in DOCKER_ALLOWED_BINDS "
                                         f"({_listed(allowed)})")
        resolved = Path(os.path.realpath(source))
        for base in allowed:
            if base.startswith("/") and resolved.is_relative_to(os.path.realpath(base)):
                return
        shown = source if str(resolved) == source else f"{source} (resolves to {resolved})"
        raise PolicyViolation(field, f"bind mount of host path {shown} is not allowed "
                                     f"(DOCKER_ALLOWED_BINDS: {_listed(allowed)})")

    def docker_limits(self) -> dict[str, int]:
        """HostConfig fields for every container; a limit set to 0 is left out (off).

        MemorySwap equals Memory so the limit cannot be sidestepped by swapping.
        """
        limits: dict[str, int] = {}
        if self.docker_memory_limit_mb:
            limits["Memory"] = limits["MemorySwap"] = self.docker_memory_limit_mb * MIB
        if self.docker_pids_limit:
            limits["PidsLimit"] = self.docker_pids_limit
        if self.docker_cpus:
            limits["NanoCpus"] = round(self.docker_cpus * 1e9)
        return limits


def host_environment(config: Config) -> dict[str, str]:
    """The policy variables as this server resolved them (real environment, `.env`, defaults),
    for its runner hosts' environment: what `RunnerPolicy.from_environment` reads back there,
    and JOB_OUTPUT_MAX_BYTES, which the runners enforce there (`output_limit`)."""
    def joined(values: tuple[str, ...] | None) -> str:
        return ",".join(values) if values is not None else ""  # "" reads back as unset

    return {
        "RUNNERS_ENABLED": joined(config.runners_enabled),
        "COMMAND_ALLOWLIST": joined(config.command_allowlist),
        "DOCKER_ALLOWED_BINDS": joined(config.docker_allowed_binds),
        "DOCKER_ALLOWED_IMAGES": joined(config.docker_allowed_images),
        "DOCKER_MEMORY_LIMIT_MB": str(config.docker_memory_limit_mb),
        "DOCKER_PIDS_LIMIT": str(config.docker_pids_limit),
        "DOCKER_CPUS": repr(config.docker_cpus),
        "JOB_OUTPUT_MAX_BYTES": str(config.job_output_max_bytes),
    }
