"""A minimal Docker Engine HTTP API client: the transport, the calls the DOCKER runner makes, two errors.

httpx over the engine's unix socket. httpx is already a dependency (HTTP_REQUEST), and the runner
needs only a dozen endpoints; the Docker SDK for Python would add requests/urllib3 and hide the
exact calls the runner's clean-up guarantees (see `docker_watchdog`) depend on.

Every failure becomes one of two exceptions so callers can tell "the engine said no"
(EngineError: a bad config, a missing image) from "no engine to ask" (EngineUnreachable), which
the runner maps to different job statuses.

Environment: DOCKER_HOST (`unix:///path`, a socket path, `tcp://host:port` or `http(s)://...`;
default `unix:///var/run/docker.sock`); DOCKER_GID is only named in the hint when the socket
refuses access (add the server's user to that group).
"""

from __future__ import annotations

import json
import os
import struct
import time
from typing import Any
from urllib.parse import quote

import httpx

from jobworkerp.runners.output_limit import CappedBuffer

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
API_VERSION = (1, 41)  # the version this runner was tested with; newer engines are asked for it


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


class Demuxer:
    """Splits the engine's multiplexed stream (frames of an 8-byte header: stream id, 3 zero bytes,
    big-endian length; then the payload) into stdout and stderr as it arrives.

    Stdout goes into a CappedBuffer, which raises OutputTooLarge once it passes the job's
    JOB_OUTPUT_MAX_BYTES; of stderr only the last `stderr_keep` bytes are kept (a failure's
    message). So container logs never fill the runner host's memory, however much they hold.
    """

    def __init__(self, stdout: CappedBuffer, stderr_keep: int) -> None:
        self.stdout = stdout
        self._stderr = bytearray()
        self._stderr_keep = stderr_keep
        self._header = bytearray()
        self._kind = 0
        self._left = 0  # payload bytes of the current frame still to come

    @property
    def stderr(self) -> bytes:
        return bytes(self._stderr[-self._stderr_keep:]) if self._stderr_keep else b""

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            if self._left == 0:
                need = 8 - len(self._header)
                self._header += view[:need]
                view = view[need:]
                if len(self._header) < 8:
                    return
                self._kind = self._header[0]
                self._left = struct.unpack(">I", self._header[4:8])[0]
                self._header.clear()
                continue
            payload, view = view[:self._left], view[self._left:]
            self._left -= len(payload)
            if self._kind == 2:
                self._stderr += payload
                if len(self._stderr) > 2 * self._stderr_keep:
                    del self._stderr[:-self._stderr_keep]
            else:
                self.stdout.add(payload)


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

    def logs(self, container_id: str, demuxer: Demuxer) -> None:
        """Feed the container's stdout and stderr to `demuxer` (which stops at its limit)."""
        self._stream_into("GET", f"/containers/{container_id}/logs", demuxer, params={"stdout": 1, "stderr": 1})

    def _stream_into(self, method: str, path: str, demuxer: Demuxer, **kwargs: Any) -> None:
        """A streamed call whose body goes to `demuxer` as it arrives (errors as in `_send`)."""
        try:
            with self._client.stream(method, f"{self._api_prefix()}{path}", timeout=httpx.Timeout(None, connect=10.0),
                                     **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    try:
                        message = response.json().get("message", response.text)
                    except ValueError:
                        message = response.text
                    raise EngineError(response.status_code, message.strip())
                for chunk in response.iter_bytes():
                    demuxer.feed(chunk)
        except httpx.TransportError as e:
            raise EngineUnreachable(self._describe_unreachable(e)) from None

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
    def exec(self, container_id: str, config: dict[str, Any], demuxer: Demuxer) -> int:
        """Run a command in a running container, its output fed to `demuxer`; its exit code."""
        exec_id = self._send("POST", f"/containers/{container_id}/exec", json=config).json()["Id"]
        # The engine hijacks the connection and streams the output until the command ends.
        self._stream_into("POST", f"/exec/{exec_id}/start", demuxer, json={"Detach": False, "Tty": False})
        for _ in range(100):  # the exit code is recorded a moment after the stream ends
            state = self._send("GET", f"/exec/{exec_id}/json").json()
            if not state.get("Running") and state.get("ExitCode") is not None:
                return int(state["ExitCode"])
            time.sleep(0.02)
        raise EngineError(500, f"exec {exec_id} did not report an exit code")


_engines: dict[str, Engine] = {}


def engine_for(docker_host: str) -> Engine:
    """One client per engine per process: runners loaded per job share its connections and API version."""
    engine = _engines.get(docker_host)
    if engine is None:
        engine = _engines[docker_host] = Engine(docker_host)
    return engine
