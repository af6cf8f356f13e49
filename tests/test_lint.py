"""ruff (configured in pyproject.toml) finds nothing in the repository: the same check as `make lint`."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _ruff() -> list[str]:
    exe = Path(sys.executable).parent / "ruff"
    if exe.exists():
        return [str(exe)]
    if shutil.which("ruff"):
        return ["ruff"]
    pytest.skip("ruff is not installed in this environment (it comes with the 'test' extra: pip install -e '.[test]')")


def test_ruff_is_clean():
    proc = subprocess.run([*_ruff(), "check", "--output-format", "concise", "--no-cache", str(REPO)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
