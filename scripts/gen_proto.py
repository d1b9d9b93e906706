"""Regenerate jobworkerp/proto/ from proto/ (betterproto2 code + a descriptor set for reflection).

Usage: python scripts/gen_proto.py [OUT_DIR]   (default: jobworkerp/proto)
The drift test calls this with a temporary OUT_DIR and compares the result with the committed code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
DESCRIPTOR_SET = "descriptor_set.binpb"


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    env = dict(os.environ)
    # protoc finds the betterproto2 plugin on PATH: put this interpreter's bin first.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}",
                f"--python_betterproto2_out={tmp}",
                "--python_betterproto2_opt=client_generation=async,server_generation=async",
                f"--descriptor_set_out={Path(tmp) / DESCRIPTOR_SET}", "--include_imports",
                *proto_files(),
            ],
            check=True, cwd=PROTO_DIR, env=env,
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(tmp, out_dir)


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "jobworkerp" / "proto")
