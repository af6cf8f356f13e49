"""Issue 9, cross-cutting: one-line errors (traceback only with -v), OS errors, Ctrl-C, odd inputs, -q/-v anywhere.

Everything here runs in-process through `embedkit.cli.main.main` (the console script) with the fake
embedder where audio must be embedded, so no TensorFlow is loaded.
"""
from __future__ import annotations

import errno
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from _fake_embedder import FakeEmbedder
from clirun import run


def _wav(path: Path, seconds: float = 4.0, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * 16000)).astype(np.float32), 16000)
    return path


def _lines(err: str) -> list[str]:
    return [x for x in err.splitlines() if x.strip()]


def _one_line(code: int, err: str, expected_code: int = 1) -> str:
    lines = _lines(err)
    assert code == expected_code and len(lines) == 1 and "Traceback" not in err, (code, err)
    return lines[0]


@pytest.fixture()
def fake_embedder(monkeypatch):
    """`embed --store` and `embed -o` use the fake embedder (no TensorFlow)."""
    fake = FakeEmbedder()
    if not hasattr(fake, "precision"):
        fake.precision = "fp32"
    monkeypatch.setattr("embedkit.collection._load", lambda *a, **k: fake)
    import embedkit

    monkeypatch.setattr(embedkit.Embedder, "from_pretrained", classmethod(lambda cls, *a, **k: fake))
    return fake


@pytest.fixture()
def store(tmp_path, fake_embedder, capsys):
    lib = tmp_path / "lib"
    for i in range(3):
        _wav(lib / f"s{i}.wav", 3.5 + i, seed=i)
    code, _, err = run(capsys, "embed", str(lib), "--store", str(tmp_path / "st"), "-q")
    assert code == 0, err
    return tmp_path / "st"


# ---- -q / -v after the subcommand ------------------------------------------------------------------------


def test_quiet_after_the_subcommand_works(tmp_path, fake_embedder, capsys):
    """The issue's case: `embedkit embed DIR --store S -q` (was a usage error)."""
    lib = tmp_path / "lib"
    _wav(lib / "a.wav")
    code, out, err = run(capsys, "embed", str(lib), "--store", str(tmp_path / "st"), "-q")
    assert code == 0 and err == "", err
    code, out, err = run(capsys, "store", "info", str(tmp_path / "st"), "--json", "-v")
    assert code == 0 and json.loads(out)["embedded"] == 1


def test_quiet_silences_numpy_warnings(capsys):
    from embedkit.cli._common import configure_logging

    with warnings.catch_warnings():
        configure_logging(quiet=True)
        np.log(np.zeros(3) - 1.0)  # RuntimeWarning: invalid value
        warnings.warn("a library's chatter", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == ""


# ---- one line, traceback only with -v --------------------------------------------------------------------


def test_user_error_is_one_line_naming_the_path_and_traceback_only_with_v(tmp_path, capsys):
    missing = tmp_path / "nostore"
    line = _one_line(*run(capsys, "store", "info", str(missing))[::2])
    assert str(missing) in line and line.startswith("embedkit: error:")
    code, _, err = run(capsys, "store", "info", str(missing), "-v")
    assert code == 1 and "Traceback" in err and _lines(err)[-1] == line


def test_usage_errors_are_one_line_with_the_way_out(capsys):
    code, _, err = run(capsys, "similar", "x", "--top-k", "0")
    line = _one_line(code, err, 2)
    assert "--top-k" in line and "embedkit similar --help" in line


def test_unexpected_exception_is_one_line_and_says_how_to_see_more(monkeypatch, capsys):
    from embedkit import pretrained

    def boom(name):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(pretrained, "card", boom)
    line = _one_line(*run(capsys, "models", "show", "msd_vgg")[::2])
    assert "internal error" in line and "ZeroDivisionError" in line and "-v" in line


@pytest.mark.parametrize("err_no, words", [(errno.ENOSPC, "no space left"), (errno.EACCES, "permission denied"),
                                           (errno.EROFS, "read-only file system")])
def test_os_errors_are_one_line_naming_the_path(monkeypatch, capsys, tmp_path, err_no, words):
    from embedkit import pretrained

    target = str(tmp_path / "out" / "x.npz")

    def fail(name):
        raise OSError(err_no, os.strerror(err_no), target)

    monkeypatch.setattr(pretrained, "card", fail)
    line = _one_line(*run(capsys, "models", "show", "msd_vgg")[::2])
    assert target in line and words in line and "internal error" not in line and "(" in line  # the way out


# ---- Ctrl-C ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_exits_130_and_prints_json_under_json(monkeypatch, capsys, as_json):
    from embedkit import pretrained

    def interrupt(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrained, "card", interrupt)
    code, out, err = run(capsys, "models", "show", "msd_vgg", *(["--json"] if as_json else []))
    assert code == 130 and _lines(err) == ["embedkit: interrupted"]
    if as_json:
        assert json.loads(out) == {"error": "interrupted", "exit_code": 130}
    else:
        assert out == ""


# ---- odd inputs ------------------------------------------------------------------------------------------


def test_nul_bytes_in_from_list_are_a_usage_error_naming_the_file_and_line(tmp_path, capsys):
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"a.wav\nb\x00c.wav\n")
    line = _one_line(*run(capsys, "embed", "--from-list", str(lst), "--store", str(tmp_path / "st"))[::2], 2)
    assert str(lst) in line and "line 2" in line and "NUL" in line
    assert not (tmp_path / "st").exists()


def test_binary_queries_file_is_refused_in_one_line(store, tmp_path, capsys):
    q = tmp_path / "q.bin"
    q.write_bytes(bytes(range(256)) * 4)
    line = _one_line(*run(capsys, "similar", str(store), "--queries", str(q))[::2], 2)
    assert str(q) in line and "NUL" in line


def test_unsupported_output_extension_is_refused_before_embedding(tmp_path, fake_embedder, capsys):
    f = _wav(tmp_path / "a.wav")
    line = _one_line(*run(capsys, "embed", str(f), "-o", str(tmp_path / "out.xyz"))[::2])
    assert "out.xyz" in line and ".npz" in line
    assert fake_embedder.calls == 0 and not (tmp_path / "out.xyz").exists()


def test_unreadable_file_in_output_mode_is_a_failed_input_not_an_abort(tmp_path, fake_embedder, capsys, monkeypatch):
    good = _wav(tmp_path / "good.wav")
    bad = _wav(tmp_path / "bad.wav", seed=1)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(bad) else real_access(p, mode, **kw))
    code, out, err = run(capsys, "embed", str(good), str(bad), "-o", str(tmp_path / "v.npz"))
    assert code == 3, err
    assert any(str(bad) in ln and "permission denied" in ln for ln in _lines(err))
    assert np.load(tmp_path / "v.npz")["vectors"].shape[0] == 1


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_is_not_an_empty_file(tmp_path, fake_embedder, capsys):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    good = _wav(tmp_path / "good.wav")
    code, out, err = run(capsys, "embed", str(good), str(fifo), "-o", str(tmp_path / "v.npz"))
    assert code == 3
    (line,) = [ln for ln in _lines(err) if "pipe.wav" in ln]
    assert "FIFO" in line and "empty file" not in line


def test_file_names_with_newlines_do_not_break_line_output(tmp_path, fake_embedder, capsys):
    odd = _wav(tmp_path / "two\nlines.wav")
    plain = _wav(tmp_path / "plain.wav", seed=2)
    code, out, err = run(capsys, "embed", str(odd), str(plain))  # no -o: one TSV line per file
    assert code == 0, err
    rows = out.splitlines()
    assert len(rows) == 2 and rows[0].startswith(str(tmp_path / "two\\nlines.wav") + "\t")
    code, out, err = run(capsys, "embed", str(tmp_path), "--store", str(tmp_path / "st"), "-q", "--ext", "wav")
    assert code == 0, err
    code, out, _ = run(capsys, "store", "list", str(tmp_path / "st"))
    assert len(out.splitlines()) == 2 and "two\\nlines.wav" in out


def test_display_path_escapes_only_what_it_must():
    from embedkit.cli._common import display_path

    assert display_path("/music/Ünïcode song (live).ogg") == "/music/Ünïcode song (live).ogg"
    assert display_path("a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert display_path("back\\slash\n") == "back\\\\slash\\n"
    assert display_path(os.fsdecode(b"bad\xffname")) == "bad\\xffname"


def test_nonfinite_option_values_are_refused(tmp_path, capsys):
    for bad in ("nan", "inf", "-1"):
        code, _, err = run(capsys, "embed", str(tmp_path), "--store", str(tmp_path / "st"), "--excerpt", bad)
        line = _one_line(code, err, 2)
        assert "--excerpt" in line
    assert not (tmp_path / "st").exists()


def test_every_command_accepts_q_and_v_after_its_name(capsys):
    from embedkit.cli.main import COMMANDS, cli

    import click

    ctx = click.Context(cli)
    for name in COMMANDS:
        cmd = cli.get_command(ctx, name)
        cmds = list(cmd.commands.values()) if isinstance(cmd, click.Group) else [cmd]
        for c in cmds:
            opts = {o for p in c.params for o in getattr(p, "opts", [])}
            assert {"-q", "-v"} <= opts or {"--quiet", "--verbose"} <= opts, f"{name} {c.name}"


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="POSIX file-system faults")
