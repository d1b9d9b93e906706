"""DOCKER runner: run a job in a container through the Docker Engine HTTP API.

Client: httpx over the engine's unix socket. httpx is already a dependency (HTTP_REQUEST), and the
runner needs only a dozen endpoints; the Docker SDK for Python would add requests/urllib3 and hide
the exact calls this module's clean-up guarantees depend on.

Per job (a non-static worker): make sure the image is present (checked locally first, pulled or
imported per the settings only when missing), create a labelled container, start it, wait for it
to exit, read its stdout and stderr, remove it. A non-zero exit is a failure (ERROR_AND_RETRY,
DESIGN.md departure) whose output carries the exit code and stderr; on success the output is stdout.

use_static: one long-lived container per runner (per host and worker), created from the settings,
and every job is an `exec` in it.

No container outlives its runner host. A timed-out job's host is SIGKILLed, so the host cannot
clean up after itself; instead, the first container a host creates starts a watchdog process in
its own session (out of reach of the process-group kill) that blocks reading a pipe from the
host. The kernel closes the pipe when the host dies for any reason, and the watchdog then removes
every container labelled with that host's owner id: a timed-out job's container, and the static
containers of a host that exits. As a second line, the first load in each host also removes
containers whose owner process on this machine no longer exists (e.g. a watchdog killed too).

Environment (runner hosts inherit the server's): DOCKER_HOST (`unix:///path`, a socket path,
`tcp://host:port` or `http(s)://...`; default `unix:///var/run/docker.sock`); DOCKER_GID is only
named in the hint when the socket refuses access (add the server's user to that group).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from jobworkerp.descriptors import check_message_bytes
from jobworkerp.proto.jobworkerp.data import RunnerType
from jobworkerp.proto.jobworkerp.runner import DockerArgs, DockerRunnerSettings
from jobworkerp.runners.base import OtherError, RetryableError, RunnerError, RunnerLoadError
from jobworkerp.runners.registry import DOCKER_ARGS_PROTO, DOCKER_SETTINGS_PROTO

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
API_VERSION = (1, 41)  # the version this runner was tested with; newer engines are asked for it
OWNER_LABEL = "jobworkerp.owner"  # unique id of the runner host process that created the container
NODE_LABEL = "jobworkerp.node"  # that process's machine, and its pid and start time, for the sweep
PID_LABEL = "jobworkerp.pid"
PID_START_LABEL = "jobworkerp.pid-start"
OUTPUT_LIMIT = 64 * 1024  # stderr kept in a failure's output
WATCHDOG_CLEANUP_S = 30.0


# --- engine client ----------------------------------------------------------------------------

class EngineError(Exception):
    """The engine answered with an error status (image missing, bad config...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Docker engine: HTTP {status}: {message}")
        self.status = status


class EngineUnreachable(Exception):
    """No answer from the engine (socket missing, refused, permission denied, timeout)."""


def engine_transport(docker_host: str) -> tuple[httpx.BaseTransport, str]:
    """An httpx transport and base URL for a DOCKER_HOST value."""
    if docker_host.startswith("unix://"):
        return httpx.HTTPTransport(uds=docker_host[len("unix://"):]), "http://docker"
    if docker_host.startswith("/"):
        return httpx.HTTPTransport(uds=docker_host), "http://docker"
    if docker_host.startswith("tcp://"):
        return httpx.HTTPTransport(), "http://" + docker_host[len("tcp://"):]
    if docker_host.startswith(("http://", "https://")):
        return httpx.HTTPTransport(), docker_host.rstrip("/")
    raise ValueError(f"DOCKER_HOST {docker_host!r}: expected unix:///path, /path, tcp://host:port or http(s)://")


def docker_host_from_env() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def _parse_version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def demux(stream: bytes) -> tuple[bytes, bytes]:
    """Split the engine's multiplexed stream (8-byte header: stream id, 3 zero bytes, length) into stdout, stderr."""
    out, err = bytearray(), bytearray()
    pos = 0
    while pos + 8 <= len(stream):
        kind, length = stream[pos], struct.unpack(">I", stream[pos + 4:pos + 8])[0]
        payload = stream[pos + 8:pos + 8 + length]
        (err if kind == 2 else out).extend(payload)
        pos += 8 + length
    return bytes(out), bytes(err)


class Engine:
    """The few Docker Engine API calls the runner needs, with errors turned into two exceptions."""

    def __init__(self, docker_host: str) -> None:
        transport, base_url = engine_transport(docker_host)
        self.docker_host = docker_host
        self._client = httpx.Client(transport=transport, base_url=base_url, timeout=httpx.Timeout(60.0, connect=10.0))
        self._prefix: str | None = None

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, path: str, *, versioned: bool = True, timeout: Any = httpx.USE_CLIENT_DEFAULT,
              **kwargs: Any) -> httpx.Response:
        url = f"{self._api_prefix()}{path}" if versioned else path
        try:
            response = self._client.request(method, url, timeout=timeout, **kwargs)
        except httpx.TransportError as e:
            raise EngineUnreachable(self._describe_unreachable(e)) from None
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise EngineError(response.status_code, message.strip())
        return response

    def _describe_unreachable(self, error: Exception) -> str:
        text = f"Docker engine at {self.docker_host} is unreachable: {type(error).__name__}: {error}"
        if "Permission denied" in str(error) or isinstance(error.__context__, PermissionError):
            gid = os.environ.get("DOCKER_GID")
            text += (f" (the server's user needs access to the socket: add it to group {gid}, see DOCKER_GID)"
                     if gid else " (the server's user needs access to the socket, e.g. the docker group)")
        return text

    def _api_prefix(self) -> str:
        """`/v1.41`, or the oldest version a newer engine still accepts if it dropped 1.41."""
        if self._prefix is None:
            info = self._send("GET", "/version", versioned=False).json()
            minimum = _parse_version(info.get("MinAPIVersion", "1.12"))
            maximum = _parse_version(info.get("ApiVersion", "1.41"))
            chosen = max(min(API_VERSION, maximum), minimum)
            self._prefix = f"/v{chosen[0]}.{chosen[1]}"
        return self._prefix

    # images
    def image(self, ref: str) -> dict[str, Any] | None:
        try:
            return self._send("GET", f"/images/{quote(ref, safe='/:@')}/json").json()
        except EngineError as e:
            if e.status == 404:
                return None
            raise

    def create_image(self, params: dict[str, str]) -> None:
        """Pull (fromImage) or import (fromSrc); the engine reports failures inside a 200 progress stream."""
        with self._client.stream("POST", f"{self._api_prefix()}/images/create", params=params, timeout=None) as r:
            if r.status_code >= 400:
                r.read()
                raise EngineError(r.status_code, r.text.strip())
            for line in r.iter_lines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("error"):
                    raise EngineError(r.status_code, str(event["error"]))

    # containers
    def create(self, config: dict[str, Any], platform: str | None = None) -> str:
        params = {"platform": platform} if platform else None
        return self._send("POST", "/containers/create", json=config, params=params).json()["Id"]

    def start(self, container_id: str) -> None:
        self._send("POST", f"/containers/{container_id}/start")

    def wait(self, container_id: str) -> int:
        """Block until the container stops; its exit code."""
        body = self._send("POST", f"/containers/{container_id}/wait", params={"condition": "not-running"},
                          timeout=httpx.Timeout(None, connect=10.0)).json()
        if body.get("Error") and body["Error"].get("Message"):
            raise EngineError(500, f"waiting for the container failed: {body['Error']['Message']}")
        return int(body["StatusCode"])

    def logs(self, container_id: str) -> tuple[bytes, bytes]:
        response = self._send("GET", f"/containers/{container_id}/logs", params={"stdout": 1, "stderr": 1},
                              timeout=httpx.Timeout(None, connect=10.0))
        return demux(response.content)

    def inspect(self, container_id: str) -> dict[str, Any] | None:
        try:
            return self._send("GET", f"/containers/{container_id}/json").json()
        except EngineError as e:
            if e.status == 404:
                return None
            raise

    def remove(self, container_id: str) -> None:
        """Force-remove (kills a running container); a container already gone is fine."""
        try:
            self._send("DELETE", f"/containers/{container_id}", params={"force": 1, "v": 1})
        except EngineError as e:
            if e.status != 404:
                raise

    def containers(self, labels: list[str]) -> list[dict[str, Any]]:
        """All containers (running or not) carrying every label (`key` or `key=value`)."""
        filters = json.dumps({"label": labels})
        return self._send("GET", "/containers/json", params={"all": 1, "filters": filters}).json()

    # exec
    def exec(self, container_id: str, config: dict[str, Any]) -> tuple[int, bytes, bytes]:
        """Run a command in a running container: (exit code, stdout, stderr)."""
        exec_id = self._send("POST", f"/containers/{container_id}/exec", json=config).json()["Id"]
        # The engine hijacks the connection and streams the output until the command ends.
        response = self._send("POST", f"/exec/{exec_id}/start", json={"Detach": False, "Tty": False},
                              timeout=httpx.Timeout(None, connect=10.0))
        stdout, stderr = demux(response.content)
        for _ in range(100):  # the exit code is recorded a moment after the stream ends
            state = self._send("GET", f"/exec/{exec_id}/json").json()
            if not state.get("Running") and state.get("ExitCode") is not None:
                return int(state["ExitCode"]), stdout, stderr
            time.sleep(0.02)
        raise EngineError(500, f"exec {exec_id} did not report an exit code")


_engines: dict[str, Engine] = {}


def engine_for(docker_host: str) -> Engine:
    """One client per engine per process: runners loaded per job share its connections and API version."""
    engine = _engines.get(docker_host)
    if engine is None:
        engine = _engines[docker_host] = Engine(docker_host)
    return engine


# --- container ownership, watchdog and sweep ---------------------------------------------------

def _process_start(pid: int) -> str:
    """Start time of `pid` in clock ticks since boot (tells a reused pid apart); "" when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]  # field 22 overall, counted after the command name


def _process_alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not start or _process_start(pid) in ("", start)


class _Owner:
    """This process's identity on the containers it creates, and its watchdog."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.id = f"{socket.gethostname()}-{self.pid}-{uuid.uuid4().hex[:12]}"
        self.labels = {
            OWNER_LABEL: self.id,
            NODE_LABEL: socket.gethostname(),
            PID_LABEL: str(self.pid),
            PID_START_LABEL: _process_start(self.pid),
        }
        self._watchdogs: dict[str, subprocess.Popen[bytes]] = {}
        self._swept: set[str] = set()
        self._lock = threading.Lock()

    def ensure_watchdog(self, docker_host: str) -> None:
        """Start (once per engine) the process that removes this process's containers when it dies."""
        with self._lock:
            watchdog = self._watchdogs.get(docker_host)
            if watchdog is not None and watchdog.poll() is None:
                return
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            # Own session: the executor kills the host's whole process group on a timeout.
            # stdout/stderr to /dev/null: holding the host's stderr pipe would keep it open after the host died.
            self._watchdogs[docker_host] = subprocess.Popen(
                [sys.executable, "-m", "jobworkerp.runners.docker", "watchdog", self.id, docker_host],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, env=env,
            )

    def sweep_once(self, engine: Engine) -> None:
        """Remove containers of dead owner processes on this machine (first load per engine only)."""
        with self._lock:
            if engine.docker_host in self._swept:
                return
            self._swept.add(engine.docker_host)
        for container in engine.containers([f"{NODE_LABEL}={socket.gethostname()}"]):
            labels = container.get("Labels") or {}
            try:
                pid = int(labels.get(PID_LABEL, ""))
            except ValueError:
                continue
            if labels.get(OWNER_LABEL) != self.id and not _process_alive(pid, labels.get(PID_START_LABEL, "")):
                engine.remove(container["Id"])


_owner: _Owner | None = None


def owner() -> _Owner:
    global _owner
    if _owner is None or _owner.pid != os.getpid():
        _owner = _Owner()
    return _owner


def remove_owned(engine: Engine, owner_id: str) -> int:
    """Remove every container of `owner_id`; how many there were."""
    containers = engine.containers([f"{OWNER_LABEL}={owner_id}"])
    for container in containers:
        engine.remove(container["Id"])
    return len(containers)


def watchdog_main(owner_id: str, docker_host: str) -> int:
    """Block until the owner's pipe closes (it exited or was killed), then remove its containers."""
    while os.read(0, 4096):
        pass
    deadline = time.monotonic() + WATCHDOG_CLEANUP_S
    engine = Engine(docker_host)
    while True:
        try:
            remove_owned(engine, owner_id)
            return 0
        except (EngineError, EngineUnreachable):
            if time.monotonic() > deadline:
                return 1
            time.sleep(0.5)


# --- settings and args -> engine configs ---------------------------------------------------------

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


def _failure(what: str, exit_code: int, stderr: bytes) -> RetryableError:
    tail = stderr[-OUTPUT_LIMIT:].decode("utf-8", "replace")
    return RetryableError(f"{what} exited with code {exit_code}\n{tail}")


# --- the runner --------------------------------------------------------------------------------

class DockerRunner:
    name: ClassVar[str] = "DOCKER"
    runner_type: ClassVar[RunnerType] = RunnerType.DOCKER
    settings_proto: ClassVar[str] = DOCKER_SETTINGS_PROTO
    args_proto: ClassVar[str] = DOCKER_ARGS_PROTO
    result_proto: ClassVar[str | None] = ""
    # Set by the runner host when it keeps this runner for a use_static worker (see _is_static).
    use_static: bool | None = None

    def __init__(self) -> None:
        self._settings = DockerRunnerSettings()
        self._source = ImageSource(None, None)
        self._engine: Engine | None = None
        self._static_container: str | None = None
        self._running: str | None = None  # the container of the job in progress (for cancel)

    def load(self, settings: bytes) -> None:
        try:
            self._settings = DockerRunnerSettings.parse(settings)
        except Exception as e:
            raise RunnerLoadError(f"runner_settings: not a DockerRunnerSettings message: {e}") from None
        try:
            self._source = ImageSource.from_settings(self._settings)
            self._engine = engine_for(docker_host_from_env())
            owner().sweep_once(self._engine)
            if self._source.ref is not None:
                self._ensure_image(self._source.ref, self._source.pull)
        except (ValueError, EngineError, EngineUnreachable) as e:
            raise RunnerLoadError(f"DOCKER runner: {e}") from None

    def _ensure_image(self, ref: str, pull: dict[str, str] | None) -> dict[str, Any]:
        """Inspect the image, pulling (or importing) it only when it is not there already."""
        assert self._engine is not None
        info = self._engine.image(ref)
        if info is None:
            if pull is None:
                pull = {"fromImage": ref}
            self._engine.create_image(pull)
            info = self._engine.image(ref)
            if info is None:
                raise EngineError(404, f"image {ref} is still missing after {pull}")
        return info

    def _is_static(self) -> bool:
        if self.use_static is not None:
            return self.use_static
        # Until the host says so explicitly: a static runner is one the host keeps in its cache.
        host = sys.modules.get("jobworkerp.runners.host")
        cache = getattr(host, "_static_runners", {}) if host is not None else {}
        return any(runner is self for runner in cache.values())

    def run(self, args: bytes) -> list[bytes]:
        assert self._engine is not None, "load() first"
        try:
            check_message_bytes("jobworkerp.runner.DockerArgs", args)  # betterproto2 alone accepts garbage
            parsed = DockerArgs.parse(args)
        except Exception as e:
            raise OtherError(f"args: not a DockerArgs message: {e}") from None
        try:
            return self._run_static(parsed) if self._is_static() else self._run_once(parsed)
        except EngineUnreachable as e:
            raise RetryableError(str(e)) from None
        except EngineError as e:
            raise OtherError(str(e)) from None

    def _run_once(self, args: DockerArgs) -> list[bytes]:
        engine = self._engine
        assert engine is not None
        image = args.image or self._source.ref
        if not image:
            raise OtherError("args.image: no image (the settings name none either)")
        self._ensure_image(image, self._source.pull if image == self._source.ref else None)
        owner().ensure_watchdog(engine.docker_host)
        config = container_config(self._settings, args, image, owner().labels)
        container_id = engine.create(config, self._settings.platform)
        self._running = container_id
        try:
            engine.start(container_id)
            exit_code = engine.wait(container_id)
            stdout, stderr = engine.logs(container_id)
        finally:
            self._running = None
            engine.remove(container_id)
        if exit_code != 0:
            raise _failure(f"container {container_id[:12]} ({image})", exit_code, stderr)
        return [stdout]

    def _run_static(self, args: DockerArgs) -> list[bytes]:
        engine = self._engine
        assert engine is not None
        if args.image and args.image != self._source.ref:
            raise OtherError(f"args.image {args.image!r}: a use_static worker runs every job in its own "
                             f"container of {self._source.ref!r}; leave args.image empty")
        container_id = self._container()
        self._running = container_id
        try:
            exit_code, stdout, stderr = engine.exec(container_id, exec_config(args))
        finally:
            self._running = None
        if exit_code != 0:
            raise _failure(f"exec in container {container_id[:12]}", exit_code, stderr)
        return [stdout]

    def _container(self) -> str:
        """The static container, (re)created if it is missing or has stopped."""
        engine = self._engine
        assert engine is not None
        if self._static_container is not None:
            state = (engine.inspect(self._static_container) or {}).get("State") or {}
            if state.get("Running"):
                return self._static_container
            engine.remove(self._static_container)
            self._static_container = None
        if self._source.ref is None:
            raise OtherError("runner_settings: a use_static DOCKER worker needs from_image (or repo) for its container")
        info = self._ensure_image(self._source.ref, self._source.pull)
        owner().ensure_watchdog(engine.docker_host)
        config = static_container_config(self._settings, self._source.ref, info, owner().labels)
        container_id = engine.create(config, self._settings.platform)
        try:
            engine.start(container_id)
        except BaseException:
            engine.remove(container_id)
            raise
        self._static_container = container_id
        return container_id

    def cancel(self) -> None:
        """Stop the job in progress: remove its container (a static one is recreated by the next job).

        The host also calls this before reusing a static runner; with nothing running it does nothing.
        """
        container_id, engine = self._running, self._engine
        if container_id is None or engine is None:
            return
        if container_id == self._static_container:
            self._static_container = None
        try:
            engine.remove(container_id)
        except (EngineError, EngineUnreachable) as e:
            raise RunnerError(f"cancel: could not remove container {container_id[:12]}: {e}") from None


def _main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "watchdog":
        return watchdog_main(argv[1], argv[2])
    print("usage: python -m jobworkerp.runners.docker watchdog OWNER_ID DOCKER_HOST", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
