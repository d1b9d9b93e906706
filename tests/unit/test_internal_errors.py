"""An unexpected error in a handler answers a generic INTERNAL with an error id; the exception's
text stays in the server log, on the line with the traceback and the same id. Domain errors keep
their clear statuses."""

from __future__ import annotations

import logging
import re

import pytest
from grpclib.const import Status

from jobworkerp.errors import InvalidArgument
from jobworkerp.front.services import _to_grpc_error


def test_an_unexpected_error_is_internal_with_an_id_that_the_log_also_has(caplog: pytest.LogCaptureFixture) -> None:
    try:
        raise RuntimeError("password=hunter2 at /srv/secret/path")
    except RuntimeError as e:
        with caplog.at_level(logging.ERROR, logger="jobworkerp.front.services"):
            error = _to_grpc_error(e)
    assert error.status == Status.INTERNAL
    message = error.message or ""
    assert "hunter2" not in message and "RuntimeError" not in message
    match = re.search(r"error id ([0-9a-f]{16})", message)
    assert match is not None, message
    [record] = caplog.records
    assert match.group(1) in record.getMessage()
    assert record.exc_info is not None and "hunter2" in caplog.text  # the traceback is logged


def test_bad_input_keeps_its_clear_status_and_message() -> None:
    error = _to_grpc_error(InvalidArgument("name", "must not be empty"))
    assert error.status == Status.INVALID_ARGUMENT
    assert error.message == "name: must not be empty"
