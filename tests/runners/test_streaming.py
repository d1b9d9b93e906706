"""Streaming output inside a runner host (runners/streaming.py): COMMAND sends stdout line by line,
a plugin's `run_stream` chunk by chunk, long chunks in pieces, and the job's output is unchanged.
In-process, with `hosted.emitting_to` standing in for a host whose caller takes chunks; the
chunks' trip through a real host is tests/actors/test_emit.py, and through the server
tests/e2e/test_output_stream.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors.hosted import emitting, emitting_to
from jobworkerp.proto.jobworkerp.runner import CommandArgs, CommandRunnerSettings
from jobworkerp.runners.base import OtherError, RetryableError
from jobworkerp.runners.command import CommandRunner
from jobworkerp.runners.output_limit import OutputTooLarge
from jobworkerp.runners.plugins import PluginRunner
from jobworkerp.runners.streaming import CHUNK_MAX_BYTES, LineChunks

pytestmark = pytest.mark.timeout(30)


def command(script: str) -> tuple[list[bytes], list[bytes]]:
    """Run `sh -c script` as a streamed COMMAND job: (chunks sent, output items)."""
    runner = CommandRunner()
    runner.load(bytes(CommandRunnerSettings(name="sh")))
    chunks: list[bytes] = []
    with emitting_to(chunks.append):
        items = runner.run(bytes(CommandArgs(args=["-c", script])))
    return chunks, items


@pytest.mark.parametrize("cuts", [[1], [3], [5, 1, 1, 100]])
def test_lines_are_sent_whole_however_the_reads_cut_them(cuts: list[int]) -> None:
    data = b"one\ntwo\n\nthree"
    sent: list[bytes] = []
    lines = LineChunks(sent.append)
    at = 0
    for size in cuts * len(data):
        if at >= len(data):
            break
        lines.feed(data[at:at + size])
        at += size
    assert sent == [b"one\n", b"two\n", b"\n"]
    lines.close()
    assert sent == [b"one\n", b"two\n", b"\n", b"three"]


def test_a_line_longer_than_a_chunk_is_sent_in_pieces_as_it_comes() -> None:
    sent: list[bytes] = []
    lines = LineChunks(sent.append)
    lines.feed(b"x" * (CHUNK_MAX_BYTES + 10))
    assert sent == [b"x" * CHUNK_MAX_BYTES]  # sent before the line ends
    lines.feed(b"y\n" + b"z" * (2 * CHUNK_MAX_BYTES + 1) + b"\n")
    assert sent[1:] == [b"x" * 10 + b"y\n", b"z" * CHUNK_MAX_BYTES, b"z" * CHUNK_MAX_BYTES, b"z\n"]
    assert all(len(chunk) <= CHUNK_MAX_BYTES for chunk in sent)


def test_command_sends_each_line_and_keeps_its_output_whole() -> None:
    chunks, items = command("echo one; echo two; printf three")
    assert chunks == [b"one\n", b"two\n", b"three"]
    assert items == [b"one\ntwo\nthree"]


def test_a_failing_command_sends_its_lines_before_it_fails() -> None:
    runner = CommandRunner()
    runner.load(bytes(CommandRunnerSettings(name="sh")))
    chunks: list[bytes] = []
    with emitting_to(chunks.append), pytest.raises(RetryableError, match="exit code 3"):
        runner.run(bytes(CommandArgs(args=["-c", "echo partial; exit 3"])))
    assert chunks == [b"partial\n"]


def test_command_streams_nothing_past_the_output_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_OUTPUT_MAX_BYTES", "2048")
    runner = CommandRunner()
    runner.load(bytes(CommandRunnerSettings(name="sh")))
    chunks: list[bytes] = []
    with emitting_to(chunks.append), pytest.raises(OutputTooLarge):
        runner.run(bytes(CommandArgs(args=["-c", "yes line | head -c 100000"])))
    assert sum(len(c) for c in chunks) <= 2048  # (a read that crosses the limit is not sent)


def test_a_command_not_streamed_sends_nothing() -> None:
    assert not emitting()
    runner = CommandRunner()
    runner.load(bytes(CommandRunnerSettings(name="sh")))
    assert runner.run(bytes(CommandArgs(args=["-c", "echo quiet"]))) == [b"quiet\n"]


class Streaming:
    """A plugin with both `run` and `run_stream`."""

    name = "streaming"
    closed = False

    def load(self, settings: bytes) -> None:
        pass

    def run(self, args: bytes) -> list[bytes]:
        return [b"run:" + args]

    def run_stream(self, args: bytes) -> Iterator[bytes | str]:
        try:
            yield b"a"
            yield "b"
            yield args * (CHUNK_MAX_BYTES + 1) if args == b"big" else args
            if args == b"forever":
                while True:
                    yield b"x" * 1024
            if args == b"bad":
                yield 3  # type: ignore[misc]
        finally:
            Streaming.closed = True


class StreamOnly:
    name = "stream-only"

    def load(self, settings: bytes) -> None:
        pass

    def run_stream(self, args: bytes) -> Iterator[bytes]:
        yield b"x"
        yield b"y"


def test_a_streamed_plugin_job_sends_each_yielded_chunk_and_outputs_them_joined() -> None:
    runner = PluginRunner(Streaming)
    chunks: list[bytes] = []
    with emitting_to(chunks.append):
        assert runner.run(b"c") == [b"abc"]
    assert chunks == [b"a", b"b", b"c"]
    with emitting_to(chunks.append):
        runner.run(b"big")
    assert [len(c) for c in chunks[5:]] == [CHUNK_MAX_BYTES] * 3 + [3]


def test_a_plugin_job_not_streamed_runs_run_or_joins_run_stream_quietly() -> None:
    assert PluginRunner(Streaming).run(b"c") == [b"run:c"]
    assert PluginRunner(StreamOnly).run(b"") == [b"xy"]


def test_a_plugin_yielding_without_end_is_stopped_at_the_output_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_OUTPUT_MAX_BYTES", "4096")
    Streaming.closed = False
    chunks: list[bytes] = []
    with emitting_to(chunks.append), pytest.raises(OtherError, match="JOB_OUTPUT_MAX_BYTES"):
        PluginRunner(Streaming).run(b"forever")
    assert Streaming.closed  # its generator was closed, so its cleanup ran
    assert sum(len(c) for c in chunks) <= 4096


def test_a_plugin_yielding_something_else_than_bytes_fails_the_job() -> None:
    with emitting_to(lambda chunk: None), pytest.raises(OtherError, match="yielded a int"):
        PluginRunner(Streaming).run(b"bad")
