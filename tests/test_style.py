"""ruff over the package: pyflakes, and a docstring on every public module, class and function."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    cmd = [str(ruff)] if ruff.exists() else [shutil.which("ruff") or "ruff"]
    r = subprocess.run([*cmd, "check", "--no-cache", "src/pybpf"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
