"""HTTP_REQUEST runner: one HTTP request per job with httpx; the response becomes an HttpRequestResult.

Classification (a deliberate difference from upstream v0.7, which returns every status as
SUCCESS; README.md, "Runners"): any response below 500, 4xx included, is a SUCCESS carrying its
status; a 5xx response or a timeout is worth retrying (ERROR_AND_RETRY); a request that cannot be
made at all (connection refused, DNS failure, bad URL, invalid header) is OTHER_ERROR, because
repeating it unchanged would fail the same way.

The httpx client lives in the runner instance, so a use_static worker reuses its connections.
The body is read as it arrives (decompressed, so a small compressed bomb counts at its real size)
and the job fails once it passes JOB_OUTPUT_MAX_BYTES (`output_limit`); of a 5xx body only the
first ERROR_BODY_LIMIT bytes are read.
"""

from __future__ import annotations

import contextlib
import re
import weakref
from typing import ClassVar
from urllib.parse import urlencode

import httpx

from jobworkerp.descriptors import check_message_bytes
from jobworkerp.proto.jobworkerp.data import RunnerType
from jobworkerp.proto.jobworkerp.runner import (
    HttpRequestArgs,
    HttpRequestResult,
    HttpRequestResultKeyValue,
    HttpRequestRunnerSettings,
)
from jobworkerp.runners.base import OtherError, RetryableError, RunnerLoadError
from jobworkerp.runners.output_limit import CappedBuffer, output_limit
from jobworkerp.runners.registry import HTTP_ARGS_PROTO, HTTP_RESULT_PROTO, HTTP_SETTINGS_PROTO

CONNECT_TIMEOUT_S = 10.0
ERROR_BODY_LIMIT = 4096  # how much of a 5xx body goes into the error text
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token: methods and header names


def _append_query(url: httpx.URL, queries: list[tuple[str, str]]) -> httpx.URL:
    """Append `queries` after any query the URL already has (upstream appends, never replaces)."""
    if not queries:
        return url
    extra = urlencode(queries)
    existing = url.query.decode("ascii")
    return url.copy_with(query=(f"{existing}&{extra}" if existing else extra).encode("ascii"))


def _result(response: httpx.Response, body: bytes) -> bytes:
    return bytes(HttpRequestResult(
        status_code=response.status_code,
        headers=[HttpRequestResultKeyValue(key=k, value=v) for k, v in response.headers.multi_items()],
        content=_text(response, body),
    ))


def _text(response: httpx.Response, body: bytes) -> str:
    """The body as text, as `response.text` would decode it (charset, else UTF-8; errors replaced)."""
    return body.decode(response.encoding or "utf-8", errors="replace")


def _head(response: httpx.Response, limit: int) -> bytes:
    """At most the first `limit` bytes of the body; the rest is never read."""
    head = bytearray()
    for chunk in response.iter_bytes():
        head += chunk
        if len(head) >= limit:
            break
    return bytes(head[:limit])


class HttpRequestRunner:
    name: ClassVar[str] = "HTTP_REQUEST"
    concurrent: ClassVar[bool] = True
    runner_type: ClassVar[RunnerType] = RunnerType.HTTP_REQUEST
    settings_proto: ClassVar[str] = HTTP_SETTINGS_PROTO
    args_proto: ClassVar[str] = HTTP_ARGS_PROTO
    result_proto: ClassVar[str | None] = HTTP_RESULT_PROTO

    def __init__(self) -> None:
        self._base_url: httpx.URL | None = None
        self._client: httpx.Client | None = None
        self._response: httpx.Response | None = None  # the response being read

    def load(self, settings: bytes) -> None:
        try:
            parsed = HttpRequestRunnerSettings.parse(settings)
        except Exception as e:
            raise RunnerLoadError(f"runner_settings: not an HttpRequestRunnerSettings message: {e}") from None
        try:
            base_url = httpx.URL(parsed.base_url)
        except httpx.InvalidURL as e:
            raise RunnerLoadError(f"runner_settings.base_url {parsed.base_url!r} is not a URL: {e}") from None
        if base_url.scheme not in ("http", "https") or not base_url.host:
            raise RunnerLoadError(
                f"runner_settings.base_url {parsed.base_url!r} must be an absolute http:// or https:// URL")
        self._base_url = base_url
        # No overall timeout: the job's own timeout bounds the request.
        self._client = httpx.Client(timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S), follow_redirects=True)
        # A per-job runner is simply dropped after its run: close its pooled connections then.
        weakref.finalize(self, self._client.close)

    def _build(self, args: HttpRequestArgs) -> httpx.Request:
        assert self._base_url is not None and self._client is not None, "load() first"
        if not _TOKEN.match(args.method):
            raise OtherError(f"args.method {args.method!r} is not a valid HTTP method")
        for header in args.headers:
            if not _TOKEN.match(header.key):
                raise OtherError(f"args.headers: {header.key!r} is not a valid header name")
            if "\r" in header.value or "\n" in header.value:
                raise OtherError(f"args.headers: the value of {header.key!r} contains a line break")
        try:
            url = _append_query(self._base_url.join(args.path), [(q.key, q.value) for q in args.queries])
            request = self._client.build_request(
                args.method,
                url,
                headers=[(h.key, h.value) for h in args.headers],
                content=None if args.body is None else args.body.encode("utf-8"),
            )
        except (httpx.InvalidURL, UnicodeEncodeError, ValueError) as e:
            raise OtherError(f"cannot build the request: {e}") from None
        request.method = args.method  # httpx upper-cases; the method token is case-sensitive
        return request

    def run(self, args: bytes) -> list[bytes]:
        try:
            check_message_bytes("jobworkerp.runner.HttpRequestArgs", args)  # betterproto2 alone accepts garbage
            parsed = HttpRequestArgs.parse(args)
        except Exception as e:
            raise OtherError(f"args: not an HttpRequestArgs message: {e}") from None
        request = self._build(parsed)
        assert self._client is not None
        body = CappedBuffer(output_limit(), f"the body of {request.method} {request.url}")
        try:
            response = self._client.send(request, stream=True)
            self._response = response
            try:
                if response.status_code >= 500:
                    text = _text(response, _head(response, ERROR_BODY_LIMIT))
                    raise RetryableError(f"{request.method} {request.url}: HTTP {response.status_code} "
                                         f"{response.reason_phrase}\n{text}")
                for chunk in response.iter_bytes():
                    body.add(chunk)
            finally:
                self._response = None
                response.close()
        except httpx.TimeoutException as e:
            raise RetryableError(f"{request.method} {request.url}: timed out: {type(e).__name__}") from None
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise OtherError(f"{request.method} {request.url}: {type(e).__name__}: {e}") from None
        return [_result(response, bytes(body.data))]

    def cancel(self) -> None:
        """Close the response being read (from another thread, in a shared host), which ends the
        read with an error; nothing to reset between jobs. A request still waiting for its
        response headers is not reached: the host stops giving new jobs to a host whose
        cancelled job does not end (`actors/_shared_host.py`)."""
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()
