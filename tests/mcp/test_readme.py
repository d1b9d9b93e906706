"""The README's MCP section: its client configurations are valid JSON whose command lines
`jobworkerp mcp` accepts, and every MCP_* variable the code reads is in the configuration table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jobworkerp.mcp.main import build_parser

pytestmark = pytest.mark.timeout(10)

ROOT = Path(__file__).resolve().parents[2]


def _section() -> str:
    match = re.search(r"^## MCP\n(.*?)(?=^## )", (ROOT / "README.md").read_text(), flags=re.S | re.M)
    assert match, "README has no '## MCP' section"
    return match.group(1)


def test_the_client_configurations_parse() -> None:
    blocks = re.findall(r"```json\n(.*?)```", _section(), flags=re.S)
    assert len(blocks) == 2
    stdio, http = (json.loads(block)["mcpServers"]["jobworkerp"] for block in blocks)
    assert stdio["args"][0] == "mcp"
    assert build_parser().parse_args(stdio["args"][1:]).address == "http://127.0.0.1:9000"
    assert http["url"].endswith("/mcp") and http["headers"]["Authorization"].startswith("Bearer ")


def test_every_variable_is_in_the_configuration_table() -> None:
    read = set(re.findall(r'"(MCP_[A-Z_]+)"', "".join(p.read_text() for p in (ROOT / "jobworkerp/mcp").glob("*.py"))))
    table = set(re.findall(r"^\| `(MCP_[A-Z_]+)` \|", (ROOT / "README.md").read_text(), flags=re.M))
    assert read and read == table
