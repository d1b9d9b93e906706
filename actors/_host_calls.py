"""Host side of one call: decode the request, run it, encode a reply that will load.

Kept apart from the process plumbing in ``_host_main`` so the reply rules can
be tested in-process. Every path returns a reply: whatever goes wrong, the
parent must get an answer for its call rather than a hung pipe.
"""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Callable

from tblib import pickling_support

from actors._framing import EMIT, REPLY, SHARED_HEAD, encode_frame, pickled
from actors.hosted import CallTable, emitting_to

Write = Callable[[bytes], None]  # sends one whole frame to the parent

__all__ = ["CallCancelled", "serve_one", "serve_shared"]


class CallCancelled(Exception):
    """The parent cancelled the call before a thread of the shared host began it."""


def serve_one(request: bytes, write: Write) -> bytes:
    """Run the call in ``request`` (an exclusive host's) and return the framed
    ``(call_id, ok, value)`` reply; chunks the call emits go out through ``write`` meanwhile."""

    def send(chunk: bytes) -> None:
        write(encode_frame(EMIT + chunk))

    return encode_frame(_serve(request, None, None, send))


def serve_shared(call_id: int, request: bytes | memoryview, calls: CallTable, write: Write) -> bytes:
    """Run call ``call_id`` of a shared host, registered in ``calls`` while it runs so a cancel
    request reaches its hooks (:mod:`actors.hosted`); returns the framed reply, led by the id.
    Chunks the call emits go out through ``write`` meanwhile, led by the id too."""
    head = SHARED_HEAD.pack(call_id, EMIT)

    def send(chunk: bytes) -> None:
        write(encode_frame(head + chunk))

    return encode_frame(SHARED_HEAD.pack(call_id, REPLY) + _serve(request, call_id, calls, send))


def _serve(request: bytes | memoryview, shared_id: int | None, calls: CallTable | None, send: Write) -> bytes:
    """The pickled reply to the call in ``request``; a call whose caller takes emitted chunks
    (the request's last field) runs with ``send`` as its :func:`actors.hosted.emit`."""
    call_id: int | None = shared_id
    try:
        call_id, fn, args, kwargs, emits = pickle.loads(request)
    except BaseException as exc:  # e.g. the function's module is not importable here
        # call_id None means "the call you sent": an exclusive host runs one call at a time,
        # and a shared host's reply carries the id outside the pickle anyway.
        return _error_reply(call_id, _as_exception(exc), "could not decode the call")
    if calls is not None and shared_id is not None:
        if not calls.begin(shared_id):
            return _error_reply(call_id, CallCancelled("cancelled before it began"), None)
    try:
        if emits:
            with emitting_to(send):
                value = fn(*args, **kwargs)
        else:
            value = fn(*args, **kwargs)
    except BaseException as exc:  # report everything; the host itself keeps serving
        return _error_reply(call_id, _as_exception(exc), None)
    finally:
        if calls is not None and shared_id is not None:
            calls.end(shared_id)
    try:
        return pickled((call_id, True, value))
    except Exception as exc:
        name = getattr(fn, "__qualname__", repr(fn))
        error = pickle.PicklingError(f"the result of {name}() could not be pickled for the caller: {exc!r}")
        return _error_reply(call_id, error, None)


def _as_exception(exc: BaseException) -> BaseException:
    """Turn SystemExit/KeyboardInterrupt from a call into an ordinary error.

    Re-raising those in the parent would stop the parent's event loop, which is
    never what a failing job should do.
    """
    if isinstance(exc, Exception):
        return exc
    wrapped = RuntimeError(f"the call raised {type(exc).__name__}{exc.args!r}")
    wrapped.__cause__ = exc
    wrapped.__traceback__ = exc.__traceback__
    return wrapped


def _error_reply(call_id: int | None, exc: BaseException, context: str | None) -> bytes:
    """Pickle ``exc`` with its traceback; fall back to a text copy if it won't round-trip.

    Exceptions with custom ``__init__`` signatures or unpicklable attributes are
    common; the parent must still get the type name, message and remote
    traceback, so we check that the pickle loads before sending it.
    """
    if context is not None:
        exc.add_note(f"runner host: {context}")
    pickling_support.install(exc)  # classes defined after start-up need registering
    try:
        payload = pickled((call_id, False, exc))
        pickle.loads(payload)
        return payload
    except Exception as pickling_error:
        return pickled((call_id, False, _text_copy(exc, pickling_error)))


def _text_copy(exc: BaseException, pickling_error: Exception) -> RuntimeError:
    """A plain RuntimeError carrying the remote exception's type, message and traceback."""
    remote = "".join(traceback.format_exception(exc))
    return RuntimeError(
        f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}\n"
        f"(the original exception could not be sent to the caller: {pickling_error!r})\n"
        f"remote traceback:\n{remote}"
    )
