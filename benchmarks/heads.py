"""Heads: training / nested-CV time, and convnet feature vs Choi's MFCC baseline on real-music tasks.

Usage: python benchmarks/heads.py [--jobs 2] [--skip-timing] [--skip-tasks] [--cache DIR] [--tracks 8]

1. Timing on synthetic vectors (10 classes, 640 dims): `Head.fit` (inner 3-fold search of Choi's SVM
   grid: 52 settings) and nested 10-fold CV, for 1,000 and 10,000 items. Target: nested 10-fold SVM
   grid on 1,000 items < 60 s on 2 cores.
2. Accuracy of the msd_vgg feature (640 dims, mean over patches) against the MFCC baseline (120 dims)
   with the same SVM head, the same nested protocol and the same folds:
   - recording identity: which of the 16 fixture recordings (../shared/data/fixtures, middle 30 s of
     each recording ≥ 20 s) a 3-s or 10-s segment comes from (segments grouped in 10-s blocks, so a
     test block's neighbouring seconds are never trained on);
   - package of origin: which Debian game-music package a 3-s / 10-s segment comes from, with
     group-aware folds (all segments of one track on the same side of every split). The packages are
     fetched with ``apt-get download`` and unpacked with ``dpkg -x`` into --cache (default a folder
     under /tmp; never inside the repository).
Segment features are the model's per-patch vectors (one 3-s patch = one 3-s segment; a 10-s segment
is the mean of its three patches), so each excerpt goes through the network once.
Writes the "heads" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_line, markdown_table, write_section  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("EMBEDKIT_SHARED", REPO.parent / "shared")) / "data" / "fixtures" / "audio"
PACKAGES = ["asc-music", "fretsonfire-songs-muldjord", "fretsonfire-songs-sectoid", "singularity-music",
            "hyperrogue-music", "planetblupi-music-ogg", "warzone2100-music", "wesnoth-1.16-music"]
EXCERPT_S = 30.0
PATCH_SAMPLES = 187 * 256  # one model patch (≈ 2.99 s at 16 kHz)
LAYOUT = [{"name": f"pool{i + 1}", "start": 128 * i, "stop": 128 * (i + 1)} for i in range(5)]


def log(msg: str) -> None:
    print(f"[heads] {msg}", file=sys.stderr, flush=True)


# ---- 1. timing ----------------------------------------------------------------------------------


def synthetic(n: int, seed: int = 0, k: int = 10, d: int = 640, sep: float = 0.04):
    """Gaussian classes; ``sep`` 0.04 gives ~0.72 held-out accuracy (a realistically hard task, every
    training item a support vector), so SVM timings are not flattered by an easy problem."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = rng.normal(size=(n, d)) + sep * rng.normal(size=(k, d))[y] * np.sqrt(d / 64)
    return X.astype(np.float32), y.astype(str)


def timing(jobs: int, big: int) -> tuple[str, list]:
    from embedkit.evaluation import nested_cv
    from embedkit.heads import Head

    rows = []

    def record(what, n, fn):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        acc = out.metrics["accuracy"]["mean"] if hasattr(out, "metrics") else None
        rows.append([what, n, f"{dt:.1f}", "" if acc is None else f"{acc:.3f}"])
        log(f"{what} n={n}: {dt:.1f} s")
        return out

    for n in (1000, big):
        X, y = synthetic(n)
        svm = Head(layout=LAYOUT, n_jobs=jobs)
        if n <= 1000:
            record("train: SVM, Choi grid (52) × inner 3-fold", n, lambda: svm.fit(X, y))
            record("nested 10-fold: SVM, Choi grid", n, lambda: nested_cv(Head(layout=LAYOUT), X, y, folds=10, n_jobs=jobs))
        else:
            sub = 2000
            record(f"train: SVM, Choi grid, selection on {sub}", n,
                   lambda: Head(layout=LAYOUT, n_jobs=jobs, selection_subsample=sub).fit(X, y))
            record(f"nested 10-fold: SVM, Choi grid, selection on {sub}", n,
                   lambda: nested_cv(Head(layout=LAYOUT, selection_subsample=sub), X, y, folds=10, n_jobs=jobs))
        record("train: logistic regression (4 C) × inner 3-fold", n, lambda: Head(kind="logreg", n_jobs=jobs).fit(X, y))
        record("nested 10-fold: logistic regression", n, lambda: nested_cv(Head(kind="logreg"), X, y, folds=10, n_jobs=jobs))
    md = markdown_table(["what", "items", "wall s", "accuracy"], rows)
    return md, rows


# ---- 2. real-music tasks --------------------------------------------------------------------------


def load_excerpt(path: Path, excerpt_s: float = EXCERPT_S) -> np.ndarray:
    """Middle ``excerpt_s`` seconds of a file, 16 kHz mono float32."""
    from embedkit import audio

    info = audio.probe(path)
    dur = info.duration_s or 0.0
    off = max(0.0, (dur - excerpt_s) / 2)
    return audio.load(path, sr=16000, offset_s=off, duration_s=excerpt_s)


def segment_features(emb, y16: np.ndarray, seg_patches: int):
    """Convnet and MFCC features of consecutive segments of ``seg_patches`` patches: ``(conv, mfcc)``."""
    from embedkit.baselines import mfcc_stats

    te = emb.embed_audio(y16, 16000, return_patches=True)
    P = te.patch_vectors
    n_seg = P.shape[0] // seg_patches
    conv = np.stack([P[i * seg_patches:(i + 1) * seg_patches].mean(axis=0) for i in range(n_seg)]) if n_seg else np.zeros((0, 640))
    L = seg_patches * PATCH_SAMPLES
    mf = np.stack([mfcc_stats(y16[i * L:(i + 1) * L]) for i in range(n_seg)]) if n_seg else np.zeros((0, 120))
    return conv.astype(np.float32), mf.astype(np.float32)


def fetch_packages(cache: Path, packages: list[str]) -> dict[str, Path]:
    """``apt-get download`` + ``dpkg -x`` each package into ``cache`` (reused when already there)."""
    out = {}
    cache.mkdir(parents=True, exist_ok=True)
    for pkg in packages:
        root = cache / pkg
        if not (root / ".done").exists():
            debs = cache / "debs"
            debs.mkdir(exist_ok=True)
            log(f"apt-get download {pkg} …")
            subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True, stdout=subprocess.DEVNULL)
            deb = sorted(debs.glob(f"{pkg}_*.deb"))[-1]
            shutil.rmtree(root, ignore_errors=True)
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
            (root / ".done").write_text("ok")
            deb.unlink()
        out[pkg] = root
    return out


def package_tracks(root: Path, max_tracks: int, min_s: float = 40.0) -> list[Path]:
    from embedkit import audio

    skip = {"guitar", "rhythm", "drums", "preview", "bass", "vocals"}
    cands = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".ogg", ".mp3", ".opus", ".flac", ".wav")
                   and p.stem.lower() not in skip)
    picked = []
    for p in cands:
        try:
            d = audio.probe(p).duration_s or 0.0
        except Exception:
            continue
        if d >= min_s:
            picked.append(p)
        if len(picked) >= max_tracks:
            break
    return picked


def evaluate_pair(name: str, conv, mf, y, groups, folds: int, jobs: int) -> list:
    from embedkit.baselines import MFCC_LAYOUT
    from embedkit.evaluation import nested_cv
    from embedkit.heads import Head

    res = []
    for feat, X, layout in (("msd_vgg convnet (640)", conv, LAYOUT), ("MFCC baseline (120)", mf, MFCC_LAYOUT)):
        t0 = time.perf_counter()
        r = nested_cv(Head(layout=layout), X, y, groups=groups, folds=folds, n_jobs=jobs)
        a = r.metrics["accuracy"]
        res.append([name, feat, len(y), len(set(y)), r.protocol["outer"], f"{a['mean']:.3f} ± {a['std']:.3f}",
                    f"{r.metrics['macro_f1']['mean']:.3f}", f"{r.chance['accuracy']:.3f}", f"{time.perf_counter() - t0:.0f}"])
        log(f"{name} / {feat}: accuracy {a['mean']:.3f} ± {a['std']:.3f}")
    return res


def tasks(jobs: int, cache: Path, n_tracks: int) -> tuple[str, list, dict]:
    from embedkit import Embedder

    emb = Embedder.from_pretrained("msd_vgg")
    rows: list = []
    info: dict = {}
    # recording identity over the fixtures
    if FIXTURES.exists():
        recs = []
        from embedkit import audio

        for p in sorted(FIXTURES.iterdir()):
            if p.suffix in (".ogg", ".wav") and (audio.probe(p).duration_s or 0) >= 20:
                recs.append(p)
        t0 = time.perf_counter()
        ex = {p: load_excerpt(p) for p in recs}
        for seg_patches, label in ((1, "3 s"), (3, "10 s")):
            conv, mf, y, g = [], [], [], []
            for p, y16 in ex.items():
                c, m = segment_features(emb, y16, seg_patches)
                conv.append(c)
                mf.append(m)
                y += [p.stem] * len(c)
                # 3-s segments grouped in blocks of three (≈ 9 s): neighbours stay on one side
                g += [f"{p.stem}#{i // 3 if seg_patches == 1 else i}" for i in range(len(c))]
            rows += evaluate_pair(f"recording identity, {label} segments", np.concatenate(conv), np.concatenate(mf),
                                  np.array(y), np.array(g), folds=3 if seg_patches == 3 else 4, jobs=jobs)
        info["recordings"] = len(recs)
        info["fixtures_s"] = time.perf_counter() - t0
    else:
        log(f"fixtures not found at {FIXTURES}: skipping the recording-identity task")
    # package of origin over Debian game-music packages
    t0 = time.perf_counter()
    roots = fetch_packages(cache, PACKAGES)
    info["download_s"] = time.perf_counter() - t0
    tracks = {pkg: package_tracks(root, n_tracks) for pkg, root in roots.items()}
    tracks = {k: v for k, v in tracks.items() if len(v) >= 3}
    info["packages"] = {k: len(v) for k, v in tracks.items()}
    t0 = time.perf_counter()
    ex = {}
    for pkg, ps in tracks.items():
        for p in ps:
            try:
                ex[(pkg, p)] = load_excerpt(p)
            except Exception as exc:  # a broken track is skipped, not fatal
                log(f"skip {p}: {exc}")
    for seg_patches, label in ((1, "3 s"), (3, "10 s")):
        conv, mf, y, g = [], [], [], []
        for (pkg, p), y16 in ex.items():
            c, m = segment_features(emb, y16, seg_patches)
            conv.append(c)
            mf.append(m)
            y += [pkg] * len(c)
            g += [str(p)] * len(c)
        rows += evaluate_pair(f"package of origin, {label} segments", np.concatenate(conv), np.concatenate(mf),
                              np.array(y), np.array(g), folds=4, jobs=jobs)
    info["packages_s"] = time.perf_counter() - t0
    info["tracks"] = len(ex)
    md = markdown_table(["task", "feature", "segments", "classes", "outer folds", "accuracy (mean ± std)", "macro-F1",
                         "chance (majority)", "s"], rows)
    return md, rows, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--big", type=int, default=10000, help="size of the large timing set")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--skip-tasks", action="store_true")
    ap.add_argument("--tracks", type=int, default=8, help="tracks per Debian package")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "embedkit-bench-heads")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    load = os.getloadavg()
    t_all = time.perf_counter()
    parts = []
    if not args.skip_timing:
        md, _ = timing(args.jobs, args.big)
        parts.append("### Time (synthetic vectors, 10 classes × 640 dims)\n\n" + md + "\n\n"
                     "Nested 10-fold: each outer fold runs the inner 3-fold search on its training part, so the SVM grid "
                     "costs 10 × 52 × 3 fits plus refits. On 10,000 items the SVM search runs on a stratified "
                     "2,000-item subsample (`--select-on 2000`) before refitting the chosen setting on all training "
                     "items; searching on all 6,700 inner-training items would cost ≈ 52 × 3 × 1.4 s ≈ 4 min per fit (estimated from a measured 1.4 s per precomputed-kernel SVC fit on 6,000 × 640; libsvm's own kernels take 10 s).")
    if not args.skip_tasks:
        md, _, info = tasks(args.jobs, args.cache, args.tracks)
        pk = ", ".join(f"{k} ({v})" for k, v in info.get("packages", {}).items())
        parts.append(
            "### Convnet feature vs MFCC baseline on real music\n\n" + md + "\n\n"
            f"Same SVM head (Choi's grid, inner 3-fold), same nested folds for both features. Recording identity: "
            f"{info.get('recordings', 0)} fixture recordings (middle 30 s), 3-s segments grouped in ≈9-s blocks "
            f"(stratified group folds) and 10-s segments in stratified folds. Package of origin: "
            f"{info.get('tracks', 0)} tracks (middle 30 s) from {pk}; stratified group folds by track, so no track "
            "has segments on both sides. Chance = accuracy of always answering the training folds' majority class."
        )
    total = time.perf_counter() - t_all
    body = "\n\n".join(parts) + (
        f"\n\nTotal wall time {total / 60:.1f} min with --jobs {args.jobs}. Load average when the benchmark started: "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} — the machine ({machine_line()}) was shared with other jobs, "
        "so times are upper bounds."
    )
    print(body)
    if not args.no_write:
        write_section("heads", body, script="benchmarks/heads.py")


if __name__ == "__main__":
    main()
