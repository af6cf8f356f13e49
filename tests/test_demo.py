"""`embedkit demo`: the built-in example runs end to end and the features separate the three styles."""
from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit import synth
from embedkit.cli.main import main


def test_synth_is_deterministic_and_distinct():
    a = synth.track("beats", 1, seconds=2.0)
    assert np.array_equal(a, synth.track("beats", 1, seconds=2.0))
    assert not np.array_equal(a, synth.track("beats", 2, seconds=2.0))
    assert a.dtype == np.float32 and a.shape == (44100,) and np.abs(a).max() <= 0.81
    with pytest.raises(ValueError, match="unknown style 'jazz'"):
        synth.track("jazz")


def test_demo_end_to_end(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--out", str(tmp_path), "--per-style", "3", "--json"])
    assert exc.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["embed"]["embedded"] == 9 and out["embed"]["failed"] == 0
    assert out["neighbours"] == 6 and out["same_style_neighbours"] >= 5
    assert out["evaluation"]["metrics"]["accuracy"]["mean"] >= 0.8
    # a rerun resumes: nothing is embedded twice
    with pytest.raises(SystemExit):
        main(["demo", "--out", str(tmp_path), "--per-style", "3", "--json"])
    again = json.loads(capsys.readouterr().out)
    assert again["embed"]["embedded"] == 0 and again["embed"]["skipped"] == 9
