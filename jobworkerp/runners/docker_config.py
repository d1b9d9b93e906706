"""DOCKER runner settings and job args -> Docker Engine API request bodies.

Pure functions that never talk to the engine, so the mapping from our protobuf messages to the
engine's JSON (which fields merge, which win, what is left out) can be read and tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobworkerp.proto.jobworkerp.runner import DockerArgs, DockerRunnerSettings
from jobworkerp.runners.base import OtherError


def image_ref(name: str, tag: str | None) -> str:
    """`name:tag`, unless `name` already carries a tag or digest."""
    if not tag or "@" in name or ":" in name.rpartition("/")[2]:
        return name
    return f"{name}:{tag}"


def _volumes(entries: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """`host:container[:mode]` entries become bind mounts, bare container paths anonymous volumes."""
    volumes: dict[str, dict[str, Any]] = {}
    binds: list[str] = []
    for entry in entries:
        if ":" in entry:
            binds.append(entry)
        else:
            volumes[entry] = {}
    return volumes, binds


def _drop_empty(config: dict[str, Any]) -> dict[str, Any]:
    """Leave unset fields out, so the engine (and the image) apply their own defaults."""
    return {k: v for k, v in config.items() if v not in (None, [], {}, "")}


@dataclass(frozen=True)
class ImageSource:
    """Where the settings say the image comes from."""

    ref: str | None  # what containers are created from; None = every job names its image
    pull: dict[str, str] | None  # /images/create parameters when it is missing locally

    @classmethod
    def from_settings(cls, s: DockerRunnerSettings) -> ImageSource:
        platform = {"platform": s.platform} if s.platform else {}
        if s.from_image:
            params = {"fromImage": s.from_image, **({"tag": s.tag} if s.tag else {}), **platform}
            return cls(image_ref(s.from_image, s.tag), params)
        if s.from_src:
            if not s.repo:
                raise ValueError("from_src needs repo (and optionally tag) to name the imported image")
            params = {"fromSrc": s.from_src, "repo": s.repo, **({"tag": s.tag} if s.tag else {}), **platform}
            return cls(image_ref(s.repo, s.tag or "latest"), params)
        if s.repo:
            return cls(image_ref(s.repo, s.tag), None)
        return cls(None, None)


def container_config(settings: DockerRunnerSettings, args: DockerArgs, image: str,
                     labels: dict[str, str]) -> dict[str, Any]:
    """One job's container: env and volumes from settings and args; the args' working dir and entrypoint win."""
    volumes, binds = _volumes([*settings.volumes, *args.volumes])
    return _drop_empty({
        "Image": image,
        "User": args.user,
        "ExposedPorts": {p if "/" in p else f"{p}/tcp": {} for p in args.exposed_ports},
        "Env": [*settings.env, *args.env],
        "Cmd": list(args.cmd),
        "ArgsEscaped": args.args_escaped,
        "Volumes": volumes,
        "WorkingDir": args.working_dir or settings.working_dir,
        "Entrypoint": list(args.entrypoint or settings.entrypoint),
        "NetworkDisabled": args.network_disabled,
        "MacAddress": args.mac_address,
        "Shell": list(args.shell),
        "Labels": labels,
        "AttachStdout": True,
        "AttachStderr": True,
        "HostConfig": _drop_empty({"Binds": binds}),
    })


def static_container_config(settings: DockerRunnerSettings, image: str, image_info: dict[str, Any],
                            labels: dict[str, str]) -> dict[str, Any]:
    """A container that stays up for exec: the image's command with a terminal and open stdin (as
    `docker run -it`), or `sh` when neither the image nor the settings name a command."""
    volumes, binds = _volumes(list(settings.volumes))
    image_config = image_info.get("Config") or {}
    needs_command = not settings.entrypoint and not image_config.get("Cmd") and not image_config.get("Entrypoint")
    return _drop_empty({
        "Image": image,
        "Env": list(settings.env),
        "WorkingDir": settings.working_dir,
        "Entrypoint": list(settings.entrypoint),
        "Cmd": ["sh"] if needs_command else None,
        "Volumes": volumes,
        "Tty": True,
        "OpenStdin": True,
        "Labels": labels,
        "HostConfig": _drop_empty({"Binds": binds}),
    })


def exec_config(args: DockerArgs) -> dict[str, Any]:
    """One job of a use_static worker, as an exec in its container (raises OtherError without a command)."""
    command = [*args.entrypoint, *args.cmd]
    if not command:
        raise OtherError("args.cmd: a use_static DOCKER job runs `exec` in the worker's container and needs a command")
    return _drop_empty({
        "Cmd": command,
        "Env": list(args.env),
        "WorkingDir": args.working_dir,
        "User": args.user,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": False,
    })
