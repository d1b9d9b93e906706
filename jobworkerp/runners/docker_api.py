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
