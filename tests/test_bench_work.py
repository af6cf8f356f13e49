"""benchmarks/scale.py clears and removes only work folders it made itself (a --work typo must not delete
someone's folder)."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
scale = pytest.importorskip("scale")


def test_a_foreign_folder_is_refused_and_survives(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(SystemExit, match="not a work folder of benchmarks/scale.py"):
        scale.fresh_work(foreign)
    assert (foreign / "thesis.tex").read_text() == "years of work"
    # publishing never removes an unmarked folder either
    scale.publish(SimpleNamespace(no_write=True, keep=False, cmd="index"), "scale", "", foreign)
    assert (foreign / "thesis.tex").exists()


def test_its_own_folder_is_cleared_then_removed_after_measuring(tmp_path):
    work = scale.fresh_work(tmp_path / "w")
    (work / "vectors.npy").write_bytes(b"old run")
    again = scale.fresh_work(work)  # a rerun starts empty (but marked)
    assert [p.name for p in again.iterdir()] == [scale.WORK_MARK]
    scale.publish(SimpleNamespace(no_write=True, keep=True, cmd="index"), "scale", "", work)
    assert work.exists()  # --keep
    scale.publish(SimpleNamespace(no_write=True, keep=False, cmd="index"), "scale", "", work)
    assert not work.exists()
    assert scale.fresh_work(tmp_path / "new").is_dir()  # a missing or empty folder is fine
