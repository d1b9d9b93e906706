"""`call_traced` on both kinds of runner host: the job's span is recorded inside the host and
comes back as data, with the value, or on the exception of a failed call."""

from __future__ import annotations

import os

import pytest

from actors.process_pool import ProcessPool
from jobworkerp.app import RUNNER_HOST_PRELOAD
from jobworkerp.proto.jobworkerp.runner import CommandArgs, CommandRunnerSettings
from jobworkerp.runners.base import RetryableError
from jobworkerp.runners.host import run_job
from jobworkerp.tracing.host import SPANS_ATTR, Traced, call_traced

COMMAND_REF = "jobworkerp.runners.command:CommandRunner"
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT:016x}-01"


def shell(text: str) -> tuple[str, bytes, bytes, int, bool]:
    return COMMAND_REF, bytes(CommandRunnerSettings(name="sh")), bytes(CommandArgs(args=["-c", text])), 1, False


@pytest.mark.parametrize("shared", [False, True], ids=["exclusive host", "shared host"])
async def test_the_host_span_comes_back_with_the_value_and_with_the_error(shared: bool) -> None:
    async with ProcessPool(1, preload=RUNNER_HOST_PRELOAD) as pool:
        run = pool.run_shared if shared else pool.run
        reply: Traced = await run(call_traced, TRACEPARENT, "vendor=1", {"jobworkerp.job.id": 7}, run_job,
                                  *shell("echo $TRACEPARENT; echo $TRACESTATE"))
        with pytest.raises(RetryableError) as failed:
            await run(call_traced, TRACEPARENT, "", {}, run_job, *shell("exit 3"))
    [(name, (trace_id, span_id, flags, state), parent, *_rest, attributes, _events, (code, _))] = reply.spans
    assert (name, trace_id, parent, flags, state, code) == ("job.host", TRACE_ID, PARENT, 1, (("vendor", "1"),), 0)
    assert attributes["jobworkerp.job.id"] == 7 and attributes["process.pid"] != os.getpid()
    assert reply.value == [f"00-{TRACE_ID:032x}-{span_id:016x}-01\nvendor=1\n".encode()]
    [failed_span] = getattr(failed.value, SPANS_ATTR)
    assert failed_span[0] == "job.host" and failed_span[-1][0] == 2  # StatusCode.ERROR
