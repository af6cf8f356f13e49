"""Cost of the store's integrity checks (issue 9): per-commit sha256 of appended shard rows, lazy
verification on first read, the checksum of every item row (written by each insert/update, checked on
every read, rows counted against ``meta``), ``store verify``; against embedkit 0.1's store (no checksums)
as the baseline.

    flock /tmp/embedkit-timing.lock nice -n 0 .venv/bin/python benchmarks/store_integrity.py [--rows 32768]

Synthetic random float32 vectors (dim 640, the msd_vgg default), committed every 64 rows as ``embed --store``
does. CPU seconds (``time.process_time``) are the figures that stay honest on a loaded machine; wall
times include fsync. Writes the "store integrity" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import markdown_table, write_section  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DIM = 640


def _old_store_module():
    """embedkit 0.1's store.py (commit 837679f), loaded as a module of the embedkit package."""
    src = subprocess.run(["git", "-C", str(REPO), "show", "837679f:embedkit/store.py"], capture_output=True,
                         text=True, check=True).stdout
    spec = importlib.util.spec_from_loader("embedkit._store_v01", loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "embedkit"
    sys.modules[spec.name] = mod
    exec(compile(src, "embedkit/store.py@837679f", "exec"), mod.__dict__)
    return mod


def _append(store_cls, path: Path, x: np.ndarray, commit_every: int = 64) -> tuple[float, float]:
    manifest = {"model": "bench", "fingerprint": "b" * 64, "dim": x.shape[1]}
    t0, c0 = time.perf_counter(), time.process_time()
    with store_cls.create(path, manifest) as st:
        for i in range(0, x.shape[0], commit_every):
            with st.transaction():
                for j in range(i, min(i + commit_every, x.shape[0])):
                    st.add_embedded(f"/m/{j}.ogg", x[j], size=j, mtime=1.0, sha256=None, duration_s=180.0,
                                    samplerate=44100)
    return time.perf_counter() - t0, time.process_time() - c0


def _read_all(store_cls, path: Path) -> list[tuple[float, float]]:
    out = []
    with store_cls.open(path) as st:
        for _ in range(2):
            t0, c0 = time.perf_counter(), time.process_time()
            st.vectors()
            out.append((time.perf_counter() - t0, time.process_time() - c0))
    return out


def _read_items(store_cls, path: Path, repeats: int = 3) -> tuple[float, float]:
    """Best of ``repeats`` full reads of the item table (``items()``: every row, checked in this store)."""
    best = (float("inf"), float("inf"))
    with store_cls.open(path) as st:
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            st.items()
            best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    return best


def _drop_cache(path: Path) -> None:
    """Ask the kernel to forget the shard pages (best effort), so that reads hit the disk or at least the copy."""
    for f in (path / "shards").glob("*"):
        try:
            fd = os.open(f, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        except (OSError, AttributeError):
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=32_768)
    args = ap.parse_args()
    from embedkit.store import Store
    from embedkit.store.verify import verify

    old = _old_store_module()
    x = np.random.default_rng(0).standard_normal((args.rows, DIM)).astype(np.float32)
    mib = x.nbytes / 2**20
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        a_old = _append(old.Store, Path(tmp) / "old", x)
        a_new = _append(Store, Path(tmp) / "new", x)
        _drop_cache(Path(tmp) / "old")
        _drop_cache(Path(tmp) / "new")
        r_old = _read_all(old.Store, Path(tmp) / "old")
        r_new = _read_all(Store, Path(tmp) / "new")
        i_old = _read_items(old.Store, Path(tmp) / "old")
        i_new = _read_items(Store, Path(tmp) / "new")
        t0, c0 = time.perf_counter(), time.process_time()
        rep = verify(Path(tmp) / "new")
        v = (time.perf_counter() - t0, time.process_time() - c0)
        assert rep.ok and rep.checked_rows == args.rows
        with Store.open(Path(tmp) / "new") as st:
            ids = st.ids()
            t0 = time.perf_counter()
            st.vectors(ids[[args.rows // 2]])
            one_first = time.perf_counter() - t0
            t0 = time.perf_counter()
            st.vectors(ids[[args.rows // 2 + 1]])
            one_again = time.perf_counter() - t0
    per_k = lambda t: 1000 * t / args.rows  # noqa: E731  seconds per 1000 rows
    rows.append(["append (commit every 64 rows), s per 1,000 rows", f"{per_k(a_old[0]):.3f} / {per_k(a_old[1]):.3f}",
                 f"{per_k(a_new[0]):.3f} / {per_k(a_new[1]):.3f}"])
    rows.append(["first `vectors()` of the whole store, s", f"{r_old[0][0]:.3f} / {r_old[0][1]:.3f}",
                 f"{r_new[0][0]:.3f} / {r_new[0][1]:.3f}"])
    rows.append(["second `vectors()` (segments already verified), s", f"{r_old[1][0]:.3f} / {r_old[1][1]:.3f}",
                 f"{r_new[1][0]:.3f} / {r_new[1][1]:.3f}"])
    rows.append(["all item rows (`items()`; here each row's checksum checked, rows counted), s per 1,000 items",
                 f"{per_k(i_old[0]):.4f} / {per_k(i_old[1]):.4f}", f"{per_k(i_new[0]):.4f} / {per_k(i_new[1]):.4f}"])
    rows.append(["`store verify` (SQLite integrity check, every row checksum, all segments, NaN scan), s", "–",
                 f"{v[0]:.3f} / {v[1]:.3f}"])
    rows.append(["`store verify`, s per 1,000 items", "–", f"{per_k(v[0]):.3f} / {per_k(v[1]):.3f}"])
    rows.append(["one vector, first touch of its segment / next, ms", "–",
                 f"{1000 * one_first:.2f} / {1000 * one_again:.2f}"])
    body = (
        f"{args.rows:,} random vectors of dim {DIM} ({mib:.0f} MiB), committed every 64 rows. Each cell: wall s / "
        f"CPU s (`time.process_time`). Load average at start: {load:.1f} on this machine"
        f"{' (loaded: other jobs were running; CPU seconds are the fair figure)' if load > 1.5 else ''}.\n\n"
        + markdown_table(["operation", "0.1 store (no checksums)", "this store (sha256 per commit)"], rows)
        + "\n\nAppending hashes the bytes as they are written (no re-read). The first full read hashes every "
          "segment once (sha256, one pass over the shard bytes); later reads in the same open store skip it. "
          "A single lookup hashes only its own segment (64 rows × 2,560 B here). Item rows: a blake2b-64 of "
          "each row's fields, written with the row and checked whenever it is read; whole-table reads scan the "
          "table without any index and compare the row count with `meta`. The append row includes all of it; "
          "embedding one 3-minute track costs seconds of CPU, so the store's write path stays a small "
          "fraction of `embed --store` time."
    )
    write_section("store integrity", body, script="benchmarks/store_integrity.py")
    print(body)


if __name__ == "__main__":
    main()
