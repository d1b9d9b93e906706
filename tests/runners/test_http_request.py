"""HTTP_REQUEST runner against a local HTTP server: URL building, result message, classification."""

from __future__ import annotations

import json
import socket

import pytest

from jobworkerp.proto.jobworkerp.data import ResultStatus
from jobworkerp.proto.jobworkerp.runner import (
    HttpRequestArgs,
    HttpRequestArgsKeyValue,
    HttpRequestResult,
    HttpRequestRunnerSettings,
)
from jobworkerp.runners.base import OtherError, RetryableError, RunnerLoadError
from jobworkerp.runners.http_request import HttpRequestRunner

pytestmark = pytest.mark.timeout(30)


def runner(base_url: str) -> HttpRequestRunner:
    r = HttpRequestRunner()
    r.load(bytes(HttpRequestRunnerSettings(base_url=base_url)))
    return r


def request(method: str, path: str, *, headers=(), queries=(), body: str | None = None) -> bytes:
    return bytes(HttpRequestArgs(
        method=method,
        path=path,
        headers=[HttpRequestArgsKeyValue(key=k, value=v) for k, v in headers],
        queries=[HttpRequestArgsKeyValue(key=k, value=v) for k, v in queries],
        body=body,
    ))


def result(items: list[bytes]) -> tuple[HttpRequestResult, dict]:
    assert len(items) == 1
    parsed = HttpRequestResult.parse(items[0])
    return parsed, json.loads(parsed.content)


def test_get_with_queries_and_headers(http_server: str) -> None:
    r = runner(http_server + "/api/")
    out, echo = result(r.run(request("GET", "items?fixed=1", headers=[("X-Token", "abc"), ("X-Multi", "1")],
                                     queries=[("q", "a b"), ("q", "2")])))
    assert out.status_code == 200
    assert echo["method"] == "GET"
    assert echo["path"] == "/api/items"  # relative path resolved against base_url
    assert echo["query"] == [["fixed", "1"], ["q", "a b"], ["q", "2"]]  # appended after the path's own query
    assert ["x-token", "abc"] in echo["headers"]
    assert ("x-echo", "1") in {(h.key.lower(), h.value) for h in out.headers}


def test_leading_slash_replaces_the_base_path(http_server: str) -> None:
    _, echo = result(runner(http_server + "/api/v1/").run(request("GET", "/root")))
    assert echo["path"] == "/root"


def test_post_sends_the_body(http_server: str) -> None:
    out, echo = result(runner(http_server).run(request("POST", "/submit", body='{"a": 1}',
                                                       headers=[("Content-Type", "application/json")])))
    assert out.status_code == 200
    assert echo["method"] == "POST"
    assert echo["body"] == '{"a": 1}'


def test_4xx_is_a_success_carrying_the_status(http_server: str) -> None:
    out, echo = result(runner(http_server).run(request("GET", "/status/404")))
    assert out.status_code == 404
    assert echo["path"] == "/status/404"


def test_5xx_is_retryable_with_the_status_in_the_message(http_server: str) -> None:
    with pytest.raises(RetryableError, match="HTTP 503") as info:
        runner(http_server).run(request("GET", "/status/503"))
    assert info.value.status == ResultStatus.ERROR_AND_RETRY


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_not_retryable() -> None:
    r = runner(f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(OtherError, match="ConnectError") as info:
        r.run(request("GET", "/"))
    assert info.value.status == ResultStatus.OTHER_ERROR


def test_invalid_method_or_header_is_other_error(http_server: str) -> None:
    r = runner(http_server)
    with pytest.raises(OtherError, match="method"):
        r.run(request("", "/"))
    with pytest.raises(OtherError, match="header name"):
        r.run(request("GET", "/", headers=[("Bad Header", "x")]))


def test_the_method_is_sent_as_given(http_server: str) -> None:
    _, echo = result(runner(http_server).run(request("PUT", "/x")))
    assert echo["method"] == "PUT"


def test_static_use_reuses_the_client(http_server: str) -> None:
    r = runner(http_server)
    client = r._client
    for _ in range(3):
        r.cancel()  # what the host does before reusing a static runner
        result(r.run(request("GET", "/again")))
    assert r._client is client


@pytest.mark.parametrize("base_url", ["", "not a url", "ftp://example.com/", "/relative/only"])
def test_bad_base_url_fails_at_load(base_url: str) -> None:
    with pytest.raises(RunnerLoadError):
        HttpRequestRunner().load(bytes(HttpRequestRunnerSettings(base_url=base_url)))


def test_garbage_args_are_other_error(http_server: str) -> None:
    with pytest.raises(OtherError, match="HttpRequestArgs"):
        runner(http_server).run(b"\xff\xff\xff")
