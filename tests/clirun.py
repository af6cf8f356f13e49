"""Run the embedkit CLI in-process and capture what a user would see."""
from __future__ import annotations

import pytest

from embedkit.cli.main import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``embedkit ARGS...`` → (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err
