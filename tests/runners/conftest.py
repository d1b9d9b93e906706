"""Fixtures for the runner tests: a local HTTP server, the Docker engine (or a skip), plugin dirs.

Without a Docker engine the Docker tests are skipped, naming the reason; on CI (``CI=true``),
which sets an engine up, they fail instead, so a broken engine cannot pass as a green build.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NoReturn
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PLUGIN_DIRS = (ROOT / "plugins", HERE / "plugins")
BROKEN_PLUGIN_DIR = HERE / "broken_plugins"
CI_DOCKER_SOCKET = "/run/jobworkerp-docker.sock"  # where .ci/docker-setup starts its engine
TEST_IMAGE = "local/busybox:test"


class EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with a JSON description of it; /status/NNN answers with status NNN."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else None
        parts = urlsplit(self.path)
        status = int(parts.path.rsplit("/", 1)[1]) if parts.path.startswith("/status/") else 200
        payload = json.dumps({
            "method": self.command,
            "path": parts.path,
            "query": parse_qsl(parts.query, keep_blank_values=True),
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body": body,
        }).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo", "1")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """Base URL of a threaded HTTP server on a free local port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def find_docker_host() -> tuple[str | None, str]:
    """(DOCKER_HOST to use, why not) for an engine that answers and has the test image."""
    candidates = [os.environ["DOCKER_HOST"]] if os.environ.get("DOCKER_HOST") else []
    candidates += [f"unix://{CI_DOCKER_SOCKET}", "unix:///var/run/docker.sock"]
    from jobworkerp.runners.docker_api import Engine, EngineError, EngineUnreachable

    reasons = []
    for docker_host in candidates:
        engine = Engine(docker_host)
        try:
            if engine.image(TEST_IMAGE) is None:
                reasons.append(f"{docker_host}: no image {TEST_IMAGE} (run .ci/docker-setup)")
                continue
            return docker_host, ""
        except (EngineError, EngineUnreachable, httpx.HTTPError) as e:
            reasons.append(f"{docker_host}: {e}")
        finally:
            engine.close()
    return None, "no Docker engine answers: " + "; ".join(reasons)


def docker_unavailable(why: str) -> NoReturn:
    """Skip a test that needs the engine, or fail it on CI (CI=true), where an engine must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, but {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """A DOCKER_HOST that answers (also exported for runners created in this process), else
    skip (fail on CI: see docker_unavailable)."""
    found, why = find_docker_host()
    if found is None:
        docker_unavailable(why)
    saved = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = found
    yield found
    if saved is None:
        os.environ.pop("DOCKER_HOST", None)
    else:
        os.environ["DOCKER_HOST"] = saved


@pytest.fixture
def engine(docker_host: str):
    """A client of the test engine, closed after the test."""
    from jobworkerp.runners.docker_api import Engine

    client = Engine(docker_host)
    yield client
    client.close()
