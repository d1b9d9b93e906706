"""`MessageCodec`: grpclib's protobuf codec with betterproto2 messages encoded by `wire.encode` and
decoded by `wire_decode.decode` — the same bytes and messages as the library's, several times
faster (a JobResult: 90 µs to parse through betterproto2, 20 µs here).

Both ends of a call pay for their codec: the server's (`front/decoding.py` RequestCodec builds on
this one) and every client's (`jobworkerp.client`, the CLI, the dashboard, the test and bench
clients). Messages that are not betterproto2's (grpclib's reflection and health services use
google.protobuf) keep grpclib's own path.
"""

from __future__ import annotations

from typing import Any

import betterproto2
from grpclib.encoding.proto import ProtoCodec

from jobworkerp.wire import Encoded, encode
from jobworkerp.wire_decode import decode


class MessageCodec(ProtoCodec):
    """The codec of every channel and server of this project (see the module doc)."""

    def encode(self, message: Any, message_type: Any) -> bytes:
        if type(message) is Encoded:  # already in its wire form (wire.Encoded)
            return message.data
        if not isinstance(message, message_type):  # as grpclib's ProtoCodec.encode
            raise TypeError(f"Message must be of type {message_type!r}, not {type(message)!r}")
        if isinstance(message, betterproto2.Message):
            return encode(message)
        return message.SerializeToString()  # type: ignore[no-any-return]  # reflection, health: google.protobuf

    def decode(self, data: bytes, message_type: Any) -> Any:
        if isinstance(message_type, type) and issubclass(message_type, betterproto2.Message):
            return decode(message_type, data)
        return super().decode(data, message_type)
