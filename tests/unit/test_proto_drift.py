"""The committed generated code must be exactly what `just proto` makes from proto/."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def _diff(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    out = [f"only in committed: {n}" for n in cmp.left_only] + [f"only in regenerated: {n}" for n in cmp.right_only]
    out += [f"differs: {n}" for n in cmp.diff_files]
    for sub in cmp.common_dirs:
        out += [f"{sub}/{line}" for line in _diff(a / sub, b / sub)]
    return out


def test_generated_code_matches_proto_sources(tmp_path: Path) -> None:
    out = tmp_path / "proto"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(out)], check=True,
                   capture_output=True)
    drift = _diff(ROOT / "jobworkerp" / "proto", out)
    assert not drift, "generated code drifted from proto/ (run `just proto` and commit):\n" + "\n".join(drift)
