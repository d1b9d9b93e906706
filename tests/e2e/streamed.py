"""Helpers for the streamed-output tests (JobStreamService), shared by e2e, scalable and CLI tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import betterproto2

from jobworkerp.proto.jobworkerp import data, ext
from jobworkerp.proto.jobworkerp import runner as runner_pb

Item = tuple[str, object]  # ("job_id", int) | ("data", bytes) | ("dropped", int) | ("end", JobResult)
COMMAND = data.RunnerId(value=1)
HANG_S = 120  # hang guard only


def command_worker(name: str, command: str = "sh", **fields: object) -> data.WorkerData:
    return data.WorkerData(name=name, runner_id=COMMAND,
                           runner_settings=bytes(runner_pb.CommandRunnerSettings(name=command)), **fields)  # type: ignore[arg-type]


def sh(script: str) -> bytes:
    return bytes(runner_pb.CommandArgs(args=["-c", script]))


def gated(gate: Path, before: str, after: str) -> str:
    """A script that prints `before`, waits until `gate` exists (failing after ~2 minutes rather
    than hanging), then prints `after`."""
    return (f"echo {before}; i=0; while [ ! -e '{gate}' ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done; "
            f"[ -e '{gate}' ] || exit 7; echo {after}")


def plain(item: ext.JobOutputItem) -> Item:
    kind, value = betterproto2.which_one_of(item, "item")
    if kind == "job_id":
        assert isinstance(value, data.JobId)
        return kind, value.value
    return kind, value


async def collect(items: AsyncIterator[ext.JobOutputItem],
                  on_item: Callable[[Item], None] = lambda item: None) -> list[Item]:
    """Every item of a stream, in order; `on_item` sees each as it arrives."""
    got: list[Item] = []
    async for item in items:
        got.append(plain(item))
        on_item(got[-1])
    return got


def open_gate_on_first_data(gate: Path) -> Callable[[Item], None]:
    """Creates `gate` when the first chunk arrives: a job waiting for it can only end if that
    chunk reached the client while the job still ran."""

    def on_item(item: Item) -> None:
        if item[0] == "data":
            gate.touch()

    return on_item
