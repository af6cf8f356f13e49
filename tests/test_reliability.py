"""Promises of docs/reliability.md not proven elsewhere: no code runs on load, no network at run time.

(Kill safety, integrity checks and one-line errors are proven by test_collection, test_store,
test_faults_store, test_fault_injection and test_faults_cli; docs/reliability.md lists which test proves what.)
"""
from __future__ import annotations

import csv
import re
import socket
from pathlib import Path

import numpy as np
import pytest

from clirun import run

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(REPO / "embedkit").rglob("*.py"), *(REPO / "cli").glob("*.py"), *(REPO / "pretrained").glob("*.py")])

#: Ways a file could make Python run code while being read. None may appear in the library.
CODE_ON_LOAD = [
    (r"allow_pickle\s*=\s*True", "numpy pickles"),
    (r"\bpickle\.loads?\(|\bcPickle\b|\bdill\b|\bcloudpickle\b", "pickle"),
    (r"\bjoblib\.load\(", "joblib pickles"),
    (r"\bmarshal\.loads?\(", "marshal"),
    (r"(?<![\w.])eval\(|(?<![\w.])exec\(", "eval/exec"),
    (r"\bload_model\(", "a saved Keras model (may hold code: Lambda layers)"),
    (r"safe_mode\s*=\s*False", "Keras unsafe deserialisation"),
    (r"\byaml\.load\(", "YAML object tags"),
    (r"\btorch\.load\(", "torch pickles"),
]


def test_no_loader_in_the_library_can_run_code():
    hits = []
    for path in SOURCES:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for pattern, what in CODE_ON_LOAD:
                if re.search(pattern, code):
                    hits.append(f"{path.relative_to(REPO)}:{i}: {what}: {line.strip()}")
    assert not hits, "\n".join(hits)


class _Payload:
    """Unpickling this would create the file ``target``: proof that code ran."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def _planted(tmp_path: Path):
    from embedkit.store import write_arrays

    rng = np.random.default_rng(0)
    y = np.array(["a", "b", "c"])[np.arange(30) % 3]
    X = (rng.normal(size=(30, 20)) + 3 * np.eye(3, 20)[np.arange(30) % 3]).astype(np.float32)
    paths = [f"/m/t{i:02d}.ogg" for i in range(30)]
    write_arrays(tmp_path / "st", paths, X, layout=[(f"pool{i}", 4) for i in range(1, 6)], fingerprint="t").close()
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label"], *zip(paths, y)])
    return tmp_path / "st", tmp_path / "labels.csv"


def test_a_pickle_planted_in_a_head_or_an_index_never_runs(tmp_path, capsys):
    """Replace a head's weights.npz and an index's arrays with pickled objects: refused, and nothing ran."""
    st, labels = _planted(tmp_path)
    head = tmp_path / "g.head"
    code, _, err = run(capsys, "train", str(st), str(labels), "-o", str(head), "--head", "logreg", "--inner-folds", "2",
                       "-j", "1", "-q")
    assert code == 0, err
    code, _, err = run(capsys, "index", "build", str(st), "--kind", "flat", "-q")
    assert code == 0, err
    sentinel = tmp_path / "code-ran"
    evil = np.array([_Payload(str(sentinel))], dtype=object)
    targets = [head / "weights.npz", *(st / "index").glob("*.npz")]
    assert len(targets) >= 2
    for t in targets:
        with open(t, "wb") as f:
            np.savez(f, **{k: evil for k in ("coef", "intercept", "vectors", "ids", "mean")}, allow_pickle=True)
    for args in (["predict", str(head), "--store", str(st), "--json"], ["similar", str(st), "1", "--json"]):
        code, out, err = run(capsys, *args)
        lines = [x for x in err.splitlines() if x.strip()]
        assert code != 0 and len(lines) == 1 and "Traceback" not in err and "internal error" not in err, (args, err)
    assert not sentinel.exists(), "a pickled object was unpickled: code ran while loading"


def test_no_network_at_run_time(tmp_path, capsys, monkeypatch):
    """With every socket refused, the whole pipeline works (weights come from the local cache)."""
    from embedkit import Embedder, pretrained

    if not pretrained.is_installed("msd_vgg"):
        pytest.fail("msd_vgg weights are not installed; run `make setup` (or `embedkit models fetch msd_vgg`)")
    tried = []

    def refuse(*args, **kwargs):
        tried.append(args)
        raise OSError("network access attempted at run time")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    import soundfile as sf

    lib = tmp_path / "lib"
    lib.mkdir()
    t = np.arange(16000 * 4) / 16000
    for i, f0 in enumerate((220.0, 330.0, 440.0)):
        sf.write(lib / f"t{i}.wav", (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), 16000)
    emb = Embedder.from_pretrained("msd_vgg")  # loads the weights from the cache, offline
    assert emb.embed_file(lib / "t0.wav").vector.shape == (640,)
    st = str(tmp_path / "st")
    for args in (["embed", str(lib), "--store", st, "-q"], ["store", "info", st], ["index", "build", st, "-q"],
                 ["similar", st, "1", "-k", "2"], ["tag", str(lib / "t1.wav"), "-k", "3"]):
        code, _, err = run(capsys, *args)
        assert code == 0, (args, err)
    assert not tried, tried


def test_every_test_named_in_reliability_md_exists():
    """docs/reliability.md names the tests that prove each promise: they must exist (no stale references)."""
    doc = (REPO / "docs" / "reliability.md").read_text()
    cited = set(re.findall(r"tests/(test_\w+\.py)::(\w+)", doc))
    assert len(cited) >= 30
    missing = [f"{f}::{t}" for f, t in sorted(cited)
               if not (REPO / "tests" / f).exists()
               or not re.search(rf"^(def {t}\(|{t}\s*[:=])", (REPO / "tests" / f).read_text(), re.M)]
    assert not missing, missing
