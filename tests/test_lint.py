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


#: Paths held clean so far (the whole tree is the goal: `make lint` checks everything).
CHECKED = ["cli/main.py", "cli/_common.py", "cli/models_cmd.py", "cli/tag_cmd.py", "cli/demo_cmd.py", "cli/datasets_cmd.py",
           "embedkit/audio.py", "embedkit/errors.py", "embedkit/progress.py", "embedkit/datasets", ".ci",
           "tests/conftest.py", "tests/test_lint.py", "tests/test_packaging.py", "tests/test_audio.py", "tests/test_cli.py",
           "tests/test_reference_data.py", "tests/test_fault_injection.py", "tests/test_faults_cli.py", "cli/options.py",
           "cli/embed_store_options.py"]


def test_ruff_is_clean():
    paths = [p for p in CHECKED if (REPO / p).exists()]
    proc = subprocess.run([*_ruff(), "check", "--output-format", "concise", "--no-cache", *paths],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
