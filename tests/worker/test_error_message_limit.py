"""A failure message, whatever a runner (a plugin) raises with, is stored at most
ERROR_MESSAGE_LIMIT bytes long, marked as cut (worker/executor.py): the result's size stays bounded."""

from __future__ import annotations

from typing import Any

import pytest

from jobworkerp.proto.jobworkerp import data
from jobworkerp.worker.executor import ERROR_MESSAGE_LIMIT
from tests.worker.harness import running_system

pytestmark = pytest.mark.timeout(30)
STORE_ALL = {"store_success": True, "store_failure": True}


async def test_a_huge_failure_message_is_cut_with_a_marker(autojump_clock: Any) -> None:
    async with running_system() as s:
        worker = await s.worker("babbler", response_type=data.ResponseType.LISTEN_AFTER, **STORE_ALL)
        short = await s.listen(worker, await s.enqueue(worker, b"babble:100"))
        assert short.data.status == data.ResultStatus.OTHER_ERROR
        assert short.data.output.items == [b"e" * 100]
        huge = await s.listen(worker, await s.enqueue(worker, f"babble:{4 * ERROR_MESSAGE_LIMIT}".encode()))
        [message] = huge.data.output.items
        assert huge.data.status == data.ResultStatus.OTHER_ERROR
        assert message.startswith(b"e" * ERROR_MESSAGE_LIMIT)
        assert message.endswith(f"({3 * ERROR_MESSAGE_LIMIT} more bytes of this message cut)".encode())
