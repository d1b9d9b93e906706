"""grpc-web from a real browser: a page on another origin calls RunnerService/FindList with
`fetch`, in binary and in text mode, as grpc-web client libraries do — so the browser itself runs
the CORS preflight and enforces the answer's CORS headers. A page whose origin is not listed in
GRPC_WEB_CORS_ORIGINS gets nothing (the browser refuses to hand the answer to the page).

The pages come from two small HTTP servers of the test on loopback ports of their own: other
origins than the grpc-web port's, but local like it (a page the browser cannot place on the
loopback, such as one made up by request interception, counts as public, and Chromium asks the
user before a public page may call a local address). The page returns the raw bytes it received;
they are parsed here with the test's own grpc-web reader (grpc_web_client.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.testing.server import ServerProcess, free_port
from tests.browser import headless_chromium
from tests.e2e.grpc_web_client import BINARY, TEXT, parse

pytestmark = pytest.mark.timeout(180)

BUILT_IN = {"COMMAND", "HTTP_REQUEST", "GRPC_UNARY", "DOCKER"}

# Calls grpc-web like a client library: an empty FindListRequest in one frame, the custom
# `x-grpc-web` header (which, with the content type, makes the browser send a preflight), and
# the answer's bytes handed back (text mode: the base64 text as it came).
FETCH = """async ([url, mode]) => {
  const text = mode === "text";
  const frame = new Uint8Array(5);  // flag 0, length 0: an empty FindListRequest
  const response = await fetch(url, {
    method: "POST",
    headers: {"content-type": text ? "application/grpc-web-text" : "application/grpc-web+proto",
              "x-grpc-web": "1", "accept": text ? "application/grpc-web-text" : "application/grpc-web+proto"},
    body: text ? btoa(String.fromCharCode(...frame)) : frame,
  });
  const body = new Uint8Array(await response.arrayBuffer());
  return {status: response.status, type: response.headers.get("content-type"),
          grpcStatus: response.headers.get("grpc-status"), body: Array.from(body)};
}"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        body = b"<!doctype html><title>grpc-web</title>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the signature http.server calls
        pass


@pytest.fixture(scope="module")
def origins() -> Iterator[tuple[str, str]]:
    """Two page origins: the one GRPC_WEB_CORS_ORIGINS lists, and another."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Page) for _ in range(2)]
    for http in servers:
        threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        listed, other = (f"http://127.0.0.1:{http.server_address[1]}" for http in servers)
        yield listed, other
    finally:
        for http in servers:
            http.shutdown()
            http.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, origins: tuple[str, str]) -> Iterator[ServerProcess]:
    web_port = free_port()
    proc = ServerProcess(tmp_path_factory.mktemp("grpc-web-browser"), {
        "USE_GRPC_WEB": "true", "GRPC_WEB_ADDR": f"127.0.0.1:{web_port}", "GRPC_WEB_CORS_ORIGINS": origins[0]})
    proc.start()
    proc.web_port = web_port  # type: ignore[attr-defined]
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as launched:
        yield launched


def _page_at(browser: Any, origin: str) -> Any:
    page = browser.new_page()
    page.goto(f"{origin}/")
    return page


@pytest.mark.parametrize("mode", ["binary", "text"])
def test_a_page_on_a_listed_origin_lists_the_runners(server: ServerProcess, browser: Any, origins: tuple[str, str],
                                                     mode: str) -> None:
    page = _page_at(browser, origins[0])
    try:
        url = f"http://127.0.0.1:{server.web_port}/jobworkerp.service.RunnerService/FindList"  # type: ignore[attr-defined]
        got = page.evaluate(FETCH, [url, mode])
    finally:
        page.close()
    assert got["status"] == 200
    assert got["type"].startswith(TEXT if mode == "text" else BINARY)
    answer = parse(httpx.Response(200, headers={"content-type": got["type"]}, content=bytes(got["body"])))
    assert answer.grpc_status == 0, answer.grpc_message
    names = {data.Runner.parse(m).data.name for m in answer.messages}
    assert BUILT_IN <= names, names


def test_a_page_on_another_origin_gets_nothing(server: ServerProcess, browser: Any, origins: tuple[str, str]) -> None:
    page = _page_at(browser, origins[1])
    try:
        url = f"http://127.0.0.1:{server.web_port}/jobworkerp.service.RunnerService/FindList"  # type: ignore[attr-defined]
        refused = page.evaluate(f"async (url) => {{ try {{ await ({FETCH})([url, 'binary']); return null; }}"
                                " catch (e) { return e.name + ': ' + e.message; } }", url)
    finally:
        page.close()
    assert refused is not None and refused.startswith("TypeError"), refused
