"""`--help` on every group and command lists each option with a one-line explanation."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobworkerp.cli.client import main
from jobworkerp.cli.client.parser import build_parser

pytestmark = pytest.mark.timeout(60)

EXPECTED_COMMANDS = {
    ("runner",): {"find", "list", "delete", "count"},
    ("worker",): {"create", "find", "find-by-name", "list", "update", "delete", "count"},
    ("job",): {"enqueue", "enqueue-for-stream", "enqueue-bulk", "find", "list", "delete", "count"},
    ("job-result",): {"find", "listen", "listen-stream", "list", "list-by-job-id", "delete", "count"},
    ("job-status",): {"find", "list"},
}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


Node = tuple[tuple[str, ...], argparse.ArgumentParser]


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[Node]:
    yield path, parser
    for name, sub in _subcommands(parser).items():
        yield from walk(sub, (*path, name))


def test_command_tree_matches_the_upstream_surface() -> None:
    tree = {path: set(_subcommands(p)) for path, p in walk(build_parser()) if len(path) == 1}
    assert tree == EXPECTED_COMMANDS


@pytest.mark.parametrize("path", [path for path, _ in walk(build_parser())], ids=lambda p: " ".join(p) or "top")
def test_help_lists_every_option_with_a_one_line_explanation(path: tuple[str, ...],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    parser = dict(walk(build_parser()))[path]
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.dest in shown and choice.help, choice.dest
            continue
        assert action.help and "\n" not in action.help, action.option_strings
        for option in action.option_strings:
            assert option in shown, f"{option} missing from `{' '.join(path)} --help`"


def test_upstream_short_options() -> None:
    def options(*path: str) -> set[str]:
        parser = dict(walk(build_parser()))[path]
        return {o for a in parser._actions for o in a.option_strings}

    assert {"-a", "-t"} <= options()
    assert {"-n", "-r", "-s", "-p", "-c", "-q"} <= options("worker", "create")
    assert {"-w", "-a", "-u", "-r", "-p", "-t"} <= options("job", "enqueue")
    assert {"-j", "-w", "-t"} <= options("job-result", "listen")
    assert {"-o", "-l"} <= options("worker", "list")
    assert {"-i"} <= options("job-result", "find")


def test_help_runs_as_a_process_without_loading_grpc_or_protobuf() -> None:
    probe = ("import sys\nfrom jobworkerp.cli.client import main\n"
             "try:\n    main(['worker', 'create', '--help'])\nexcept SystemExit:\n    pass\n"
             "heavy = ('grpclib', 'google.protobuf', 'rich', 'betterproto2', 'asyncio')\n"
             "heavy = [m for m in heavy if m in sys.modules]\n"
             "print('HEAVY', heavy)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "--settings" in done.stdout and "HEAVY []" in done.stdout


def test_module_and_console_script_entry_points() -> None:
    as_module = subprocess.run([sys.executable, "-m", "jobworkerp.cli", "--help"], capture_output=True, text=True,
                               timeout=30)
    assert as_module.returncode == 0 and "job-result" in as_module.stdout
    script = Path(sys.executable).with_name("jobworkerp-client")
    if not os.access(script, os.X_OK):
        pytest.skip("jobworkerp-client console script not installed in this environment")
    as_script = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30)
    assert as_script.returncode == 0 and "jobworkerp-client" in as_script.stdout
