"""The README's "Client walkthrough" shows the issue's commands, and each one parses as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from jobworkerp.cli.client.parser import build_parser

pytestmark = pytest.mark.timeout(10)

README = Path(__file__).resolve().parents[2] / "README.md"

WALKTHROUGH = [
    "jobworkerp-client runner list",
    """jobworkerp-client worker create --name "ExampleRequest" --runner-id 2 --settings '{"base_url":"https://www.example.com/search"}' --response-type DIRECT""",  # noqa: E501
    """jobworkerp-client job enqueue --worker "ExampleRequest" --args '{"headers":[],"method":"GET","path":"/search","queries":[{"key":"q","value":"test"}]}'""",  # noqa: E501
    """jobworkerp-client worker create --name "SleepWorker" --runner-id 1 --settings '{"name":"sleep"}' --response-type LISTEN_AFTER --store-success --store-failure""",  # noqa: E501
    """jobworkerp-client job enqueue --worker 'SleepWorker' --args '{"args":["60"]}'""",
    "jobworkerp-client job-result listen --job-id <id> --timeout 70000 --worker 'SleepWorker'",
    """jobworkerp-client worker create --name "PeriodicEchoWorker" --runner-id 1 --settings '{"name":"echo"}' --periodic 3000 --response-type NO_RESULT --store-success --store-failure""",  # noqa: E501
    """jobworkerp-client job enqueue --worker 'PeriodicEchoWorker' --args '{"args":["Hello", "World", "!"]}' --run-after-time 1000""",  # noqa: E501
    "jobworkerp-client job delete --id <id>",
]


def walkthrough_section() -> str:
    text = README.read_text()
    match = re.search(r"^## Client walkthrough\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, "README has no '## Client walkthrough' section"
    return match.group(1)


def test_readme_shows_every_walkthrough_command() -> None:
    section = walkthrough_section()
    for command in WALKTHROUGH:
        assert command in section, command


def test_every_command_in_the_section_parses() -> None:
    commands = [line for line in walkthrough_section().splitlines() if line.startswith("jobworkerp-client ")]
    assert len(commands) >= len(WALKTHROUGH)
    for line in commands:
        argv = shlex.split(line.replace("<id>", "123"))[1:]
        args = build_parser().parse_args(argv)
        assert args.handler, line
