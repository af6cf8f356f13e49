"""Which network: every pretrained model and useful combinations, side by side on the same real-music tasks.

Usage: nice -n 5 python benchmarks/models.py [--tracks 8] [--head logreg] [--cache DIR] [--no-cost] [--no-write]

Tasks (the machinery of benchmarks/heads.py, imported, not copied):
  - package of origin: which Debian game-music package a 10-s / 3-s segment comes from (middle 30 s of
    ``--tracks`` tracks per package; group folds by track, so no track is on both sides of a split);
  - recording identity: which fixture recording a 3-s segment comes from (3-s segments grouped in 9-s blocks).
Every feature set gets the same head (``--head``, default logistic regression with its inner-CV grid) and the
same nested folds. Few-label curve: package of origin with k labelled tracks per package (k = 1, 2, 4;
5 random draws; standardised logistic regression, C = 1; tested on every other track). Per-block: each
block of each model alone on package of origin (10 s). Cost: × real time of ``embed_files`` over the 25
fixtures (one process, the model(s) loaded once) and the vector size.

Per-patch features of each single model are cached in ``--cache`` (an .npz per model); a combination's
features are the concatenation of its members' — tests/test_multimodel.py checks that a multi-model
vector equals that concatenation bit for bit. Writes the "models" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heads as heads_bench  # noqa: E402  (task machinery: packages, tracks, excerpts)
from _report import machine_line, markdown_table, write_section  # noqa: E402

MODELS = ["msd_vgg", "msd_musicnn", "mtt_vgg", "mtt_musicnn"]
COMBOS = ["msd_vgg+msd_musicnn", "msd_musicnn+mtt_musicnn", "msd_vgg+msd_musicnn+mtt_vgg+mtt_musicnn"]
FEW_K = (1, 2, 4)


def log(msg: str) -> None:
    print(f"[models] {msg}", file=sys.stderr, flush=True)


def clips(cache: Path, n_tracks: int) -> list[dict]:
    """The excerpts of both tasks: ``{"key", "task", "label", "group_stem", "y16"}`` (16 kHz mono, ≤ 30 s)."""
    from embedkit import audio

    out = []
    if heads_bench.FIXTURES.exists():
        for p in sorted(heads_bench.FIXTURES.iterdir()):
            if p.suffix in (".ogg", ".wav") and (audio.probe(p).duration_s or 0) >= 20:
                out.append({"key": f"rec/{p.name}", "task": "recording", "label": p.stem, "group": p.stem,
                            "y16": heads_bench.load_excerpt(p)})
    else:
        log(f"fixtures not found at {heads_bench.FIXTURES}: no recording-identity task")
    roots = heads_bench.fetch_packages(cache / "packages", heads_bench.PACKAGES)
    for pkg, root in roots.items():
        tracks = heads_bench.package_tracks(root, n_tracks)
        if len(tracks) < 3:
            continue
        for p in tracks:
            try:
                y16 = heads_bench.load_excerpt(p)
            except Exception as exc:  # a broken track is skipped, not fatal
                log(f"skip {p}: {exc}")
                continue
            out.append({"key": f"pkg/{pkg}/{p.relative_to(root)}", "task": "package", "label": pkg,
                        "group": str(p), "y16": y16})
    return out


def patch_features(model: str, items: list[dict], cache: Path, precision: str = "fp32") -> dict[str, np.ndarray]:
    """``{clip key: (n_patches, D) float32}`` for one model, cached in ``cache/feats_<model>[_<precision>].npz``."""
    from embedkit import Embedder

    path = cache / (f"feats_{model}.npz" if precision == "fp32" else f"feats_{model}_{precision}.npz")
    have: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as z:
            have = {k: z[k] for k in z.files}
    todo = [it for it in items if it["key"] not in have]
    if todo:
        log(f"{model}: embedding {len(todo)} excerpts")
        emb = Embedder.from_pretrained(model, precision=precision)
        for it in todo:
            have[it["key"]] = emb.embed_audio(it["y16"], 16000, return_patches=True).patch_vectors
        np.savez(path, **have)
    return {it["key"]: have[it["key"]] for it in items}


def segments(items: list[dict], feats: dict[str, np.ndarray], task: str, seg: int):
    """Segment features (mean of ``seg`` consecutive patches), labels and groups of one task."""
    X, y, g = [], [], []
    for it in items:
        if it["task"] != task:
            continue
        P = feats[it["key"]]
        n = P.shape[0] // seg
        for i in range(n):
            X.append(P[i * seg:(i + 1) * seg].mean(axis=0))
            y.append(it["label"])
            # recording identity: 3-s segments in 9-s blocks; package: all segments of a track together
            g.append(f"{it['group']}#{i // 3}" if task == "recording" else it["group"])
    return np.asarray(X, np.float32), np.asarray(y), np.asarray(g)


#: inner-CV grid per head kind (None = the head's own); logreg's C ∈ {0.1, 1} keeps the CPU cost modest
GRID: dict[str, list[dict] | None] = {"logreg": [{"C": 0.1}, {"C": 1.0}]}


def evaluate(X, y, g, head: str, folds: int, layout=None, full_grid: bool = False) -> tuple[float, float]:
    from embedkit.evaluation import nested_cv
    from embedkit.heads import Head

    grid = None if full_grid else GRID.get(head)
    r = nested_cv(Head(kind=head, layout=layout, grid=grid), X, y, groups=g, folds=folds)
    a = r.metrics["accuracy"]
    return float(a["mean"]), float(a["std"])


def few_label(X, y, g, k: int, draws: int = 5) -> tuple[float, float]:
    """Accuracy with ``k`` labelled tracks per class (rest tested), mean ± std over ``draws`` random draws."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    accs = []
    for _ in range(draws):
        train = np.zeros(len(y), bool)
        for c in np.unique(y):
            groups = np.unique(g[y == c])
            for grp in rng.choice(groups, size=min(k, len(groups) - 1), replace=False):
                train |= g == grp
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
        clf.fit(X[train], y[train])
        accs.append(float((clf.predict(X[~train]) == y[~train]).mean()))
    return float(np.mean(accs)), float(np.std(accs))


def cost(model: str, files: list[Path]) -> tuple[float, float]:
    """(× real time of embed_files over ``files``, audio seconds) with the model(s) loaded once (warm)."""
    from embedkit import Embedder, audio

    emb = Embedder.from_pretrained(model)
    list(emb.embed_files(files[:1]))  # trace
    secs = sum(audio.probe(f).duration_s or 0.0 for f in files)
    t0 = time.perf_counter()
    res = list(emb.embed_files(files))
    dt = time.perf_counter() - t0
    assert all(r.ok for r in res)
    return secs / dt, secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=8, help="tracks per Debian package")
    ap.add_argument("--head", default="logreg", help="head kind for the side-by-side table (logreg, svm, ...)")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--full-grid", action="store_true", help="the head's full inner-CV grid (default: logreg C ∈ {0.1, 1})")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "embedkit-bench-models")
    ap.add_argument("--no-cost", action="store_true", help="skip the × real time column")
    ap.add_argument("--all-segments", action="store_true", help="also package of origin on 3-s segments (10× the items)")
    ap.add_argument("--models", default=",".join(MODELS), help="single models to compare (combinations of them follow)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    load = os.getloadavg()
    t_all = time.perf_counter()
    args.cache.mkdir(parents=True, exist_ok=True)
    items = clips(args.cache, args.tracks)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    single = {m: patch_features(m, items, args.cache) for m in models}
    feature_sets = {m: single[m] for m in models}
    for combo in COMBOS:
        parts = combo.split("+")
        if not set(parts) <= set(models):
            continue
        feature_sets[combo] = {k: np.concatenate([single[m][k] for m in parts], axis=1) for k in single[parts[0]]}

    tasks = [("package of origin, 10 s", "package", 3), ("recording identity, 3 s", "recording", 1)]
    if args.all_segments:
        tasks.insert(1, ("package of origin, 3 s", "package", 1))
    rows, few_rows, block_rows = [], [], []
    files = sorted(p for p in heads_bench.FIXTURES.iterdir()) if heads_bench.FIXTURES.exists() else []
    for name, feats in feature_sets.items():
        row = [f"`{name}`", next(iter(feats.values())).shape[1]]
        for label, task, seg in tasks:
            X, y, g = segments(items, feats, task, seg)
            if len(set(y)) < 2:
                row.append("n/a")
                continue
            m, s = evaluate(X, y, g, args.head, args.folds, full_grid=args.full_grid)
            row.append(f"{m:.3f} ± {s:.3f}")
            log(f"{name} / {label}: {m:.3f} ± {s:.3f}")
        X, y, g = segments(items, feats, "package", 3)
        few = [few_label(X, y, g, k) for k in FEW_K]
        few_rows.append([f"`{name}`", *[f"{m:.3f} ± {s:.3f}" for m, s in few]])
        if not args.no_cost and files:
            xrt, _ = cost(name, files)
            row.append(f"{xrt:.0f}×")
        rows.append(row)
    for m in models:
        from embedkit import pretrained

        X, y, g = segments(items, single[m], "package", 3)
        start = 0
        for b in pretrained.card(m)["feature_blocks"]:
            size = int(b["size"])
            acc, sd = evaluate(X[:, start:start + size], y, g, args.head, args.folds, full_grid=args.full_grid)
            block_rows.append([f"`{m}`", b["name"], size, f"{acc:.3f} ± {sd:.3f}"])
            log(f"{m}:{b['name']}: {acc:.3f}")
            start += size

    n_pkg = sum(1 for it in items if it["task"] == "package")
    n_rec = sum(1 for it in items if it["task"] == "recording")
    heads_cols = ["feature set", "dim (mean)"] + [t[0] for t in tasks] + ([] if args.no_cost else ["× real time (25 fixtures)"])
    body = (
        f"### Side by side ({args.head} head{'' if args.full_grid or args.head not in GRID else ' with C ∈ {0.1, 1}'}, "
        f"nested {args.folds}-fold, group folds)\n\n"
        + markdown_table(heads_cols, rows)
        + "\n\n### Few labels: package of origin (10 s) with k labelled tracks per package\n\n"
        + markdown_table(["feature set"] + [f"k = {k}" for k in FEW_K], few_rows)
        + "\n\n### Which blocks carry the task: package of origin (10 s), one block at a time\n\n"
        + markdown_table(["model", "block", "dim", "accuracy"], block_rows)
        + f"\n\nData: {n_pkg} Debian tracks (middle 30 s, {args.tracks} per package, "
        f"{len(heads_bench.PACKAGES)} packages) and {n_rec} fixture recordings (middle 30 s). Accuracy is mean ± std "
        "over outer folds; chance is about 1/8 (package) and 1/16 (recording). Few-label cells: mean ± std over 5 draws. "
        f"× real time: `embed_files` over the 25 fixtures with the model(s) loaded, machine loaded by other jobs "
        f"(load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}): relative costs hold, absolute "
        f"figures are lower bounds. Total {(time.perf_counter() - t_all) / 60:.1f} min on {machine_line()}."
    )
    print(body)
    if not args.no_write:
        write_section("models", body, script="benchmarks/models.py")


if __name__ == "__main__":
    main()
