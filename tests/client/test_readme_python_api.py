"""README "Python API": its example blocks run as written against a real server and print what
their comments say.

Each block follows a `<!-- python-api-example: FILE -->` marker and is written to FILE in one
directory, which is also the server's PLUGINS_RUNNER_DIR (geometry.py is the function module).
The only change made is the address: the README's 127.0.0.1:9000 becomes the test server's.
Every `print(...)  # expected` line must print `expected`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jobworkerp.testing.server import ServerProcess

pytestmark = pytest.mark.timeout(240)

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"<!-- python-api-example: (\S+) -->\n```python\n(.*?)```", re.S)
EXPECTED = re.compile(r"^\s*print\(.*\)  # (.*)$", re.M)
RUN_ORDER = ["client.py", "blocking.py", "with_trio.py"]  # later blocks use workers made by earlier ones


def examples() -> dict[str, str]:
    section = README.read_text().split("## Python API\n", 1)[1].split("\n## ", 1)[0]
    return dict(BLOCK.findall(section))


def test_the_section_has_the_examples() -> None:
    blocks = examples()
    assert set(blocks) == {"geometry.py", *RUN_ORDER}
    assert "jobworkerp.client import Client" in blocks["client.py"] and "Stub" not in blocks["client.py"]
    for name in RUN_ORDER:
        assert EXPECTED.findall(blocks[name]), name


def test_the_examples_run_as_written(tmp_path: Path) -> None:
    blocks = examples()
    example_dir = tmp_path / "example"
    example_dir.mkdir()
    (example_dir / "geometry.py").write_text(blocks["geometry.py"])
    server = ServerProcess(tmp_path, {"PLUGINS_RUNNER_DIR": str(example_dir)}).start()
    try:
        for name in RUN_ORDER:
            code = blocks[name].replace("127.0.0.1:9000", f"127.0.0.1:{server.port}")
            (example_dir / name).write_text(code)
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            done = subprocess.run([sys.executable, name], cwd=example_dir, capture_output=True, text=True,
                                  timeout=180, env=env)
            assert done.returncode == 0, f"{name}:\n{done.stdout}\n{done.stderr}"
            assert done.stdout.splitlines() == EXPECTED.findall(blocks[name]), name
    finally:
        assert server.stop() == 0, server.log()
