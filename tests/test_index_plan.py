"""embedkit.index.plan: the pure index planner (which kind, which parameters, memory, why), FAISS-free."""
from __future__ import annotations

import subprocess
import sys

import pytest

from embedkit.index.plan import FLAT_MAX_WORK, choose_index, estimate_memory, format_bytes, parse_memory

GiB = 2**30


def test_planner_imports_no_faiss_and_no_numpy_arrays():
    code = ("import sys; import embedkit.index.plan as p; p.choose_index(10**6, 640, 2**30); "
            "print('faiss' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_format_bytes():
    assert format_bytes(3 * GiB) == "3.0 GiB" and format_bytes(None) == "unlimited" and format_bytes(12) == "12 B"


# ---- choose_index (pure) ----------------------------------------------------------------------------


def test_choose_index_exact_below_threshold_then_ann():
    at = FLAT_MAX_WORK // 640
    assert choose_index(at, 640, 8 * GiB).kind == "flat"
    assert choose_index(10, 640).kind == "flat"
    assert choose_index(0, 640).kind == "flat"
    big = choose_index(at + 1, 640, 8 * GiB)
    assert big.kind == "hnsw" and big.fits_budget
    assert big.params["M"] >= 16 and "efConstruction" in big.params
    # the threshold is on the amount of work, so lower dims allow more vectors
    assert choose_index(at * 4, 160, 8 * GiB).kind == "flat"


def test_choose_index_memory_budget_picks_ivfpq_that_fits():
    n, d = 1_000_000, 640
    roomy = choose_index(n, d, 8 * GiB)
    assert roomy.kind == "hnsw" and roomy.memory_bytes > n * d * 4
    tight = choose_index(n, d, 1 * GiB)
    assert tight.kind == "ivfpq" and tight.fits_budget and tight.memory_bytes <= 1 * GiB
    assert d % tight.params["pq_m"] == 0 and tight.params["nlist"] >= 1024
    tighter = choose_index(n, d, 100 * 2**20)
    assert tighter.kind == "ivfpq" and tighter.params["pq_m"] < tight.params["pq_m"]
    with pytest.raises(ValueError, match="too small"):
        choose_index(n, d, 10 * 2**20)


def test_choose_index_explicit_kind_and_bad_input():
    p = choose_index(50_000, 640, 1 * 2**20, kind="flat")
    assert p.kind == "flat" and not p.fits_budget
    ivf = choose_index(50_000, 64, kind="ivf")
    assert ivf.kind == "ivf" and 50_000 >= 39 * ivf.params["nlist"]
    assert ivf.factory_string() == f"IVF{ivf.params['nlist']},Flat"
    assert choose_index(50_000, 640, pca_dim=64).index_dim == 64
    with pytest.raises(ValueError, match="unknown index kind"):
        choose_index(10, 8, kind="lsh")
    with pytest.raises(ValueError, match="pca_dim"):
        choose_index(10, 8, pca_dim=16)
    assert estimate_memory("flat", 10, 8, {}) == 10 * 8 * 4 + 80


def test_parse_memory():
    assert parse_memory("4G") == 4 * GiB
    assert parse_memory("512MB") == 512 * 2**20
    assert parse_memory("1.5GiB") == int(1.5 * GiB)
    assert parse_memory("1000") == 1000
    assert parse_memory(None) is None
    with pytest.raises(ValueError, match="12 parsecs"):
        parse_memory("12 parsecs")
