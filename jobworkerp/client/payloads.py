"""Settings, args and output as Python values <-> the bytes the server keeps, by the runner's protos.

Encoding accepts, for a runner that publishes a message: a dict in protobuf's JSON mapping
(`{"args": ["hello"]}`), encoded by the runner's own proto text compiled at run time (the CLI's
codec, `protocodec.py`); or bytes already encoded (a betterproto2 message is encoded for you).
For a runner without one (its proto text is empty): bytes, or a str sent as UTF-8. Decoding
follows models.py's rule: a dict when the runner publishes a message (bytes that do not parse
stay bytes), else bytes; a failed job's output is its error text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobworkerp.client.errors import InvalidArgument
from jobworkerp.client.protocodec import CodecError, compile_first_message, first_message_name


def _has_message(proto_text: str | None) -> bool:
    return bool((proto_text or "").strip())


def encode(proto_text: str | None, value: Any, what: str) -> bytes:
    """`value` as the bytes of the runner's message (or raw); InvalidArgument names `what`."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    import betterproto2

    if isinstance(value, betterproto2.Message):
        return bytes(value)
    if isinstance(value, Mapping):
        if not _has_message(proto_text):
            raise InvalidArgument(f"{what}: the runner publishes no message for it; give bytes or a str")
        assert proto_text is not None
        try:
            return compile_first_message(proto_text).encode_value(value, what)
        except CodecError as e:
            raise InvalidArgument(str(e)) from None
    if isinstance(value, str):
        if _has_message(proto_text):
            name = first_message_name(proto_text or "") or "the runner's message"
            raise InvalidArgument(f"{what}: give a dict in the fields of {name}, or bytes already encoded")
        return value.encode("utf-8")
    raise InvalidArgument(f"{what}: expected a dict, bytes or str, got {type(value).__name__}")


def decode(proto_text: str | None, raw: bytes) -> Any:
    """Bytes as a dict through the runner's message, or the bytes themselves."""
    if _has_message(proto_text):
        assert proto_text is not None
        try:
            return compile_first_message(proto_text).decode(raw)
        except Exception:  # a proto that does not compile, or bytes of another message: keep them
            return raw
    return raw


def decode_output(result_proto: str | None, items: list[bytes], success: bool) -> list[Any]:
    """A result's output items: decoded on success, the error text (str) otherwise."""
    if not success:
        return [item.decode("utf-8", "replace") for item in items]
    return [decode(result_proto, item) for item in items]
