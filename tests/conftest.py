"""Shared fixtures: paths to ../shared (skip clearly when absent), synthesized audio, the real embedder."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EMBEDKIT_SHARED", REPO.parent / "shared"))


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (the ../shared folder beside the repository); skipping")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED, "shared data")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``../shared/data/fixtures/audio``: 25 real, redistributable music recordings."""
    return _need(SHARED / "data" / "fixtures" / "audio", "real-music fixtures")


#: Vendored copy of ``../shared/reference`` (5 clips with their licences, JSON, log-mel npz; ~4 MB), so that
#: the port-agreement tests run on every clone. See tests/data/README.md.
REFERENCE = REPO / "tests" / "data" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``tests/data/reference``: clips plus outputs of the original musicnn MSD_vgg graph (vendored)."""
    if not REFERENCE.exists():
        pytest.fail(f"vendored reference data missing at {REFERENCE}; it is part of the repository (git checkout it)")
    return REFERENCE


@pytest.fixture(scope="session")
def embedder():
    """The real msd_vgg Embedder (weights must be installed: `make setup` / `embedkit models fetch`)."""
    from embedkit import Embedder, pretrained

    if not pretrained.is_installed("msd_vgg"):
        pytest.fail("msd_vgg weights are not installed; run `make setup` (or `embedkit models fetch msd_vgg`)")
    return Embedder.from_pretrained("msd_vgg", batch_size=32)


@pytest.fixture
def write_wav(tmp_path):
    """``write_wav(name, y, sr=16000, subtype="PCM_16") -> Path`` into tmp_path (soundfile picks the format)."""
    import soundfile as sf

    def _write(name: str, y: np.ndarray, sr: int = 16000, **kw) -> Path:
        path = tmp_path / name
        sf.write(path, y, sr, **kw)
        return path

    return _write


@pytest.fixture(scope="session")
def real_fixture_store(tmp_path_factory, fixtures_dir) -> Path:
    """A store of the 25 real fixture recordings with per-patch vectors, built once per session."""
    from embedkit.collection import embed_into_store

    base = tmp_path_factory.getbasetemp() / "real_fixture_store"
    embed_into_store([fixtures_dir], base, patches=True, progress=False)
    return base
