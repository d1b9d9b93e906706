"""GRPC_UNARY runner: call one unary gRPC method with the job's args as the raw request bytes.

Departure from upstream (README.md, "Runners"): request and response bytes pass through untouched
(a raw codec), instead of upstream's accidental BytesValue wrapping. Settings are `{url, path}`.

The runner host is synchronous, so each runner owns a private asyncio loop and runs one call on
it per job; the grpclib channel (one HTTP/2 connection) lives on that loop, so a use_static
worker reuses its connection. Nothing connects at load: an unreachable target shows up as
UNAVAILABLE on the call, which is retryable, like any other transient gRPC failure.

Only unary methods are supported: a reply with a second message means the target streams, and
the job fails saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from typing import Any, ClassVar
from urllib.parse import urlsplit

from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from grpclib.metadata import decode_grpc_message

from jobworkerp.proto.jobworkerp.data import RunnerType
from jobworkerp.proto.jobworkerp.runner import GrpcUnaryRunnerSettings
from jobworkerp.runners.base import (
    AbortError,
    FatalError,
    OtherError,
    RetryableError,
    RunnerError,
    RunnerLoadError,
)
from jobworkerp.runners.registry import GRPC_SETTINGS_PROTO

# gRPC status -> the error class that carries the job's ResultStatus (README.md, GRPC_UNARY).
_STATUS_ERRORS: dict[Status, type[RunnerError]] = {
    Status.DEADLINE_EXCEEDED: RetryableError,
    Status.UNAVAILABLE: RetryableError,
    Status.CANCELLED: AbortError,
    Status.ABORTED: AbortError,
    Status.UNKNOWN: OtherError,
}


class RawCodec(CodecBase):
    """Pass message bytes through unchanged, declared as protobuf on the wire (`application/grpc+proto`)."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return bytes(data)


def parse_target(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of an `http://host[:port]` or `https://host[:port]` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be http://host[:port] or https://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must not have a path, query or fragment (the method goes in `path`)")
    tls = parts.scheme == "https"
    return parts.hostname, parts.port or (443 if tls else 80), tls


def normalize_path(path: str) -> str:
    """`pkg.Service/Method` or `/pkg.Service/Method` -> `/pkg.Service/Method`."""
    full = "/" + path.lstrip("/")
    service, _, method = full[1:].partition("/")
    if not service or not method or "/" in method:
        raise ValueError("must look like package.Service/Method")
    return full


def _trailers_only_status(stream: Any) -> tuple[Status | None, str | None]:
    """The grpc-status of a trailers-only reply that grpclib's client rejected for its missing content-type.

    grpclib servers answer an unknown method that way (UNIMPLEMENTED); the client then reports
    UNKNOWN "Missing content-type header", which would hide the real status.
    """
    headers = getattr(getattr(stream, "_stream", None), "headers", None)
    if not headers:
        return None, None
    values = dict(headers)
    try:
        status = Status(int(values["grpc-status"]))
    except (KeyError, ValueError):
        return None, None
    message = values.get("grpc-message")
    return status, decode_grpc_message(message) if message else None


def _close(loop: asyncio.AbstractEventLoop, channel_box: list[Channel]) -> None:
    """Finalizer: close the connection and the loop when the runner is dropped.

    The loop runs once more so the transport really closes its socket. In a runner host no other
    loop runs; where one does (tests under asyncio), that last turn happens on a helper thread.
    """
    if loop.is_closed():
        return
    while channel_box:
        channel_box.pop().close()

    def finish() -> None:
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop runs in this thread: the runner host's case
        finish()
        return
    helper = threading.Thread(target=finish, name="grpc-unary-close")
    helper.start()
    helper.join()


class GrpcUnaryRunner:
    name: ClassVar[str] = "GRPC_UNARY"
    concurrent: ClassVar[bool] = True
    runner_type: ClassVar[RunnerType] = RunnerType.GRPC_UNARY
    settings_proto: ClassVar[str] = GRPC_SETTINGS_PROTO
    args_proto: ClassVar[str] = ""  # the job's args are the request message's bytes
    result_proto: ClassVar[str | None] = None  # the output item is the response message's bytes

    def __init__(self) -> None:
        self._target: tuple[str, int, bool] | None = None
        self._path = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel_box: list[Channel] = []  # 0 or 1 channel, created on the loop at first call
        self._task: asyncio.Task[bytes] | None = None  # the call in progress

    def load(self, settings: bytes) -> None:
        try:
            parsed = GrpcUnaryRunnerSettings.parse(settings)
        except Exception as e:
            raise RunnerLoadError(f"runner_settings: not a GrpcUnaryRunnerSettings message: {e}") from None
        try:
            self._target = parse_target(parsed.url)
        except ValueError as e:
            raise RunnerLoadError(f"runner_settings.url {parsed.url!r}: {e}") from None
        try:
            self._path = normalize_path(parsed.path)
        except ValueError as e:
            raise RunnerLoadError(f"runner_settings.path {parsed.path!r}: {e}") from None
        self._loop = asyncio.new_event_loop()
        weakref.finalize(self, _close, self._loop, self._channel_box)

    def run(self, args: bytes) -> list[bytes]:
        assert self._loop is not None, "load() first"
        self._task = self._loop.create_task(self._call(args))
        try:
            return [self._loop.run_until_complete(self._task)]
        except asyncio.CancelledError:
            raise AbortError(f"the call of {self._path} was cancelled") from None
        finally:
            self._task = None

    def _channel(self) -> Channel:
        if not self._channel_box:
            assert self._target is not None
            host, port, tls = self._target
            self._channel_box.append(Channel(host, port, ssl=True if tls else None, codec=RawCodec()))
        return self._channel_box[0]

    async def _call(self, request: bytes) -> bytes:
        where = f"{self._path} at {self._target[0]}:{self._target[1]}" if self._target else self._path
        stream = self._channel().request(self._path, Cardinality.UNARY_UNARY, bytes, bytes)
        try:
            async with stream:
                await stream.send_message(request, end=True)
                reply = await stream.recv_message()
                if reply is not None and await stream.recv_message() is not None:
                    with contextlib.suppress(Exception):  # the server may have finished the stream already
                        await stream.cancel()
                    raise FatalError(
                        f"{where} answered with more than one message: it is a streaming method, and "
                        "GRPC_UNARY only calls unary methods")
                await stream.recv_trailing_metadata()
        except GRPCError as e:
            status, message = e.status, e.message
            if status == Status.UNKNOWN:
                real_status, real_message = _trailers_only_status(stream)
                if real_status is not None:
                    status, message = real_status, real_message
            error = _STATUS_ERRORS.get(status, FatalError)
            detail = f": {message}" if message else ""
            raise error(f"{where}: gRPC status {status.name} ({status.value}){detail}") from None
        except (OSError, StreamTerminatedError) as e:
            # Connection refused or lost: what gRPC clients report as UNAVAILABLE.
            self._reset_channel()
            raise RetryableError(f"{where}: UNAVAILABLE: {type(e).__name__}: {e}") from None
        except ProtocolError as e:
            raise OtherError(f"{where}: protocol error: {e}") from None
        if reply is None:
            raise OtherError(f"{where}: the call ended with status OK but no response message")
        return reply

    def _reset_channel(self) -> None:
        while self._channel_box:
            self._channel_box.pop().close()

    def cancel(self) -> None:
        """Cancel the call in progress (from another thread, in a shared host); nothing to reset
        between jobs."""
        task, loop = self._task, self._loop
        if task is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)
