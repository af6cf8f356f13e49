"""The foundation commands: models, tag, embed -o; exit codes 0/1/2/3 and one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from synth import tone
from clirun import run




@pytest.fixture
def song(write_wav):
    return write_wav("song.wav", tone(440, 7.0, 22050, noise=0.05), 22050)


def test_models_list_and_show(capsys):
    code, out, _ = run(capsys, "models", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["msd_vgg", "msd_musicnn", "mtt_vgg", "mtt_musicnn"]
    assert rows[0]["dim"] == 640 and rows[0]["parameters"] == 607030 and rows[0]["installed"]
    code, out, _ = run(capsys, "models", "show", "msd_vgg")
    assert code == 0 and "ISC" in out and "[ 512:640 ] pool5" in out and "Million Song Dataset" in out
    code, _, err = run(capsys, "models", "show", "nope")
    assert code == 1 and "unknown model 'nope'" in err and err.count("\n") == 1


def test_missing_weights_name_the_command(capsys, monkeypatch, tmp_path, song):
    monkeypatch.setenv("EMBEDKIT_HOME", str(tmp_path / "empty"))
    code, out, err = run(capsys, "tag", str(song))
    assert code == 1 and out == ""
    assert "embedkit models fetch msd_vgg" in err and err.count("\n") == 1 and "Traceback" not in err


def test_tag_json_and_partial_failure(capsys, song, tmp_path):
    bad = tmp_path / "fake.mp3"
    bad.write_text("hello")
    code, out, err = run(capsys, "tag", str(song), str(bad), "--top-k", "3", "--json")
    assert code == 3
    res = json.loads(out)
    assert len(res[0]["tags"]) == 3 and res[0]["tags"][0]["p"] >= res[0]["tags"][1]["p"]
    assert res[1]["path"] == str(bad) and "fake.mp3" in res[1]["error"]
    assert "fake.mp3" in err


def test_embed_to_npz(capsys, song, write_wav, tmp_path):
    short = write_wav("short.wav", tone(660, 1.0), 16000)
    out_file = tmp_path / "vecs.npz"
    code, out, err = run(capsys, "embed", str(song), str(short), "-o", str(out_file), "--patches", "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["embedded"] == 2 and summary["dim"] == 640 and summary["failed"] == 0
    data = np.load(out_file)
    assert data["vectors"].shape == (2, 640) and list(data["paths"]) == [str(song), str(short)]
    assert data["patch_vectors"].shape[0] == data["n_patches"].sum() == 3
    assert json.loads(str(data["layout"]))[4] == {"name": "pool5", "block": "pool5", "stat": "mean", "start": 512, "stop": 640}
    assert "repeat-padded" in err  # the 1-s clip says it was padded


def test_embed_layers_and_formats(capsys, song, tmp_path):
    code, _, _ = run(capsys, "embed", str(song), "-o", str(tmp_path / "v.npy"), "--layers", "4,5", "--aggregate", "mean+std")
    assert code == 0 and np.load(tmp_path / "v.npy").shape == (1, 512)
    code, _, err = run(capsys, "embed", str(song), "-o", str(tmp_path / "v.npy"), "--layers", "9")
    assert code == 2 and "out of range" in err


def test_usage_errors_exit_2(capsys):
    code, _, err = run(capsys, "tag")
    assert code == 2 and "Missing argument" in err
    code, _, _ = run(capsys, "embed", "x.wav", "--aggregate", "median")
    assert code == 2
