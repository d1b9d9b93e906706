"""descriptors.check_message_bytes: unknown fields pass, a declared field with a wire type its
type cannot have is refused at any depth (the fast path that skips the walk when nothing is
unknown must not skip these)."""

from __future__ import annotations

import pytest

from jobworkerp.descriptors import check_message_bytes
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc

NAME = "jobworkerp.service.JobRequest"


def test_valid_and_unknown_fields_pass() -> None:
    check_message_bytes(NAME, b"")
    check_message_bytes(NAME, bytes(svc.JobRequest(worker_id=data.WorkerId(value=7), args=b"x", uniq_key="k")))
    check_message_bytes(NAME, b"\xf8\x07\x01")  # field 127: not declared, kept as unknown
    check_message_bytes(NAME, b"\x0a\x03\x12\x01x")  # worker_id { field 2 (undeclared) }


@pytest.mark.parametrize("payload, field", [
    (b"\x0a\x01\x08", None),  # worker_id holds a cut-off varint: the parser refuses
    (b"\x08\x01", "worker_id"),  # a message field sent as a varint
    (b"\x0a\x03\x0a\x01x", "value"),  # inside worker_id: an int64 sent length-delimited
    (b"\xf8\x07\x01\x0a\x03\x0a\x01x", "value"),  # with an unknown field beside it
])
def test_wrong_wire_types_are_refused_at_any_depth(payload: bytes, field: str | None) -> None:
    with pytest.raises(ValueError) as refused:
        check_message_bytes(NAME, payload)
    if field is not None:
        assert f"field {field} " in str(refused.value)
