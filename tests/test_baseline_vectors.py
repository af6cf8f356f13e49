"""Issue 8's promise: vectors are bit-identical before and after the refactor.

Compares what embedkit computes now with the vectors embedkit 0.1.0 saved for the 5 reference clips
(tests/data/baseline, tests/data/reference/audio; both part of the repository), through the single-file
API and through a store. Bit-identical on the machine class the baseline was made on (its CPU flags and
library versions are recorded); within 1e-5 elsewhere, where oneDNN may sum in another order.

msd_musicnn is held to 1e-5 everywhere: embedkit 0.1.0 itself does not reproduce its own musicnn vectors
bit for bit (rerun at commit 837679f on the baseline's machine with the same 30-file stream, 6 of 30
files differed by up to 7e-7), so exactness there would test the thread scheduler, not this code.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from embedkit import pretrained

DATA = Path(__file__).resolve().parent / "data"
SLICE = DATA / "baseline" / "release-0.1.0-slice.npz"
AUDIO = DATA / "reference" / "audio"
MODELS = ("msd_vgg", "msd_musicnn")
#: models whose vectors 0.1.0 reproduces bit for bit run after run (see the module docstring)
DETERMINISTIC = {"msd_vgg"}


def _baseline() -> dict[str, np.ndarray]:
    if not SLICE.exists():
        pytest.fail(f"{SLICE} is part of the repository and missing: git checkout it")
    with np.load(SLICE) as z:
        return {k: z[k] for k in z.files}


def _same_machine(base: dict) -> bool:
    import tensorflow as tf
    import keras

    flags = open("/proc/cpuinfo").read().split("flags", 1)[1].split("\n", 1)[0].split() if Path("/proc/cpuinfo").exists() else []
    mine = " ".join(sorted(f for f in flags if re.match(r"(avx|amx|fma|sse4)", f)))
    versions = f"tensorflow {tf.__version__} numpy {np.__version__} keras {keras.__version__}"
    return mine == str(base["machine_cpu_flags"]) and versions == str(base["machine_versions"])


def _check(got: np.ndarray, want: np.ndarray, exact: bool, what: str) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, what
    if exact:
        assert got.tobytes() == want.tobytes(), f"{what}: not bit-identical (max |diff| {np.abs(got - want).max():.3g})"
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=what)


@pytest.fixture(scope="module")
def clips() -> list[Path]:
    files = sorted(AUDIO.glob("*.wav"))
    if len(files) != 5:
        pytest.fail(f"expected the 5 vendored reference clips in {AUDIO}, found {len(files)}")
    return files


@pytest.mark.parametrize("model", MODELS)
def test_vectors_unchanged_since_release(model, clips, request):
    if not pretrained.is_installed(model):
        pytest.skip(f"weights of {model} are not installed (run: embedkit models fetch {model})")
    from embedkit import Embedder

    base = _baseline()
    exact = _same_machine(base) and model in DETERMINISTIC
    emb = request.getfixturevalue("embedder") if model == "msd_vgg" else Embedder.from_pretrained(model)
    results = list(emb.embed_files(clips, aggregate="mean+std"))
    for f, r in zip(clips, results):
        key = f"{model}/{f.name}"
        assert r.ok, r.error
        assert r.n_patches == int(base[f"{key}/n_patches"])
        _check(r.vector, base[f"{key}/vector"], exact, f"{key} vector")
        _check(r.tags, base[f"{key}/tags"], exact, f"{key} tags")


def test_store_vectors_unchanged_since_release(clips, embedder, tmp_path):
    """The same through `embed --store` (spec → manifest → shards → Store.vectors) and the store's spec."""
    from embedkit.collection import embed_into_store
    from embedkit.spec import VectorSpec
    from embedkit.store import Store

    base = _baseline()
    exact = _same_machine(base)
    s = embed_into_store(clips, tmp_path / "st", embedder=embedder, aggregate="mean+std", progress=False)
    assert s["embedded"] == 5 and s["failed"] == 0
    with Store.open(tmp_path / "st") as st:
        assert st.spec == VectorSpec.for_model("msd_vgg", aggregation="mean+std")
        assert st.fingerprint == st.spec.fingerprint
        for f in clips:
            item = st.get(str(f))
            _check(st.vectors([item.id])[0], base[f"msd_vgg/{f.name}/vector"], exact, f"store msd_vgg/{f.name}")
