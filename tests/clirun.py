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


def one_line_error(code: int, err: str) -> str:
    """The error is one line (the last; progress lines may come before it), exit code 1, no traceback."""
    assert code == 1, err
    lines = err.splitlines()
    assert lines and lines[-1].startswith("embedkit: error: ") and "Traceback" not in err, err
    assert sum(line.startswith("embedkit: error") for line in lines) == 1, err
    return lines[-1]
