"""Attention over patches: highlight localisation on spliced real music, and attention vs mean pooling.

Usage: nice -n 5 python benchmarks/highlight.py [--tracks 8] [--splices 60] [--train-splices 24] [--cache DIR] [--no-write]

1. Localisation. Debian game-music packages (`benchmarks/heads.py`'s ``fetch_packages``); the middle
   90 s of up to --tracks tracks per package. Tracks of every package are split in two halves (2 folds,
   then swapped). In each fold an attention head (package of origin, track-level labels only) is trained
   on the training half; test splices are built only from the other half: a 24-s segment from the
   middle of a track of package B is pasted, RMS-matched and with 50-ms equal-power crossfades, at a
   random place into the 90-s excerpt of a track of package A ≠ B, and the spliced audio is embedded.
   Each method picks a 24-s highlight: attention × activation of class B (Huang et al. 2018), attention
   alone, activation of B alone, the same two for a multiple-instance ("MIL") head that also learned from
   --train-splices splices of training tracks labelled only with their insert's package, the teacher's
   top-tag activity, loudest window, most repeated window, and a uniformly random window (expectation
   over 200 draws). Hit = the highlight's centre lies inside
   the insert; IoU = overlap / union of the two 24-s intervals.
2. Track-level accuracy, attention pooling vs mean pooling with the same nested folds (same seed, same
   labels and groups → the same outer splits): package of origin (30-s items = 10 patches, 3 per track,
   stratified group folds by track) and recording identity (the fixture recordings; 9-s items = 3
   patches, stratified folds, as benchmarks/heads.py's 10-s task). Mean pooling feeds a logistic
   regression head (the same linear classifier the attention head ends in) and the SVM head.

Per-patch embeddings are cached under --cache (default /tmp/embedkit-bench-highlight), never in the repo.
Writes the "highlight" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_line, markdown_table, write_section  # noqa: E402
from heads import FIXTURES, PACKAGES, fetch_packages, package_tracks  # noqa: E402

SR = 16000
PATCH_S = 187 * 256 / SR
HOST_S = 90.0
INSERT_S = 24.0
XFADE_S = 0.05


def log(msg: str) -> None:
    print(f"[highlight] {msg}", file=sys.stderr, flush=True)


def _key(*parts) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


class Cache:
    """Per-patch embeddings (vectors, tags, starts) and decoded excerpts, as .npz under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root / "patches"
        self.root.mkdir(parents=True, exist_ok=True)
        self._emb = None

    @property
    def emb(self):
        if self._emb is None:
            from embedkit import Embedder

            self._emb = Embedder.from_pretrained("msd_vgg")
        return self._emb

    def excerpt(self, path: Path, length_s: float) -> np.ndarray:
        f = self.root / f"audio-{_key(path, length_s)}.npy"
        if f.exists():
            return np.load(f)
        from embedkit import audio

        dur = audio.probe(path).duration_s or 0.0
        y = audio.load(path, sr=SR, offset_s=max(0.0, (dur - length_s) / 2), duration_s=length_s)
        np.save(f, y.astype(np.float32))
        return y

    def patches(self, key: str, y16: np.ndarray) -> dict:
        f = self.root / f"emb-{key}.npz"
        if f.exists():
            with np.load(f) as z:
                return {k: z[k] for k in z.files}
        te = self.emb.embed_audio(y16, SR, return_patches=True)
        d = {"P": te.patch_vectors.astype(np.float32), "tags": te.patch_tags.astype(np.float32),
             "starts": np.asarray(te.patch_start_s, np.float64)}
        np.savez(f, **d)
        return d


def splice(host: np.ndarray, insert: np.ndarray, at: int) -> np.ndarray:
    """``host`` with ``insert`` pasted at sample ``at``, RMS-matched to the host, equal-power crossfades."""
    rms_h = np.sqrt(np.mean(host.astype(np.float64) ** 2)) + 1e-9
    rms_i = np.sqrt(np.mean(insert.astype(np.float64) ** 2)) + 1e-9
    ins = insert.astype(np.float64) * (rms_h / rms_i)
    out = host.astype(np.float64).copy()
    n = len(ins)
    f = int(XFADE_S * SR)
    g = np.ones(n)
    ramp = np.sin(np.linspace(0, np.pi / 2, f))
    g[:f], g[-f:] = ramp, ramp[::-1]
    h = np.sqrt(np.clip(1 - g**2, 0, 1))
    out[at:at + n] = out[at:at + n] * h + ins * g
    return np.clip(out, -1, 1).astype(np.float32)


def iou(a0: float, a1: float, b0: float, b1: float) -> float:
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    return inter / (max(a1, b1) - min(a0, b0))


def make_splice(cache: Cache, rng, host_t: Path, ins_t: Path) -> tuple[np.ndarray, dict, float]:
    """Splice ``ins_t``'s middle 24 s into ``host_t``'s middle 90 s at a random place: ``(y16, patches, at_s)``."""
    host = cache.excerpt(host_t, HOST_S)
    ins = cache.excerpt(ins_t, INSERT_S)
    at = int(float(rng.uniform(0, HOST_S - INSERT_S)) * SR)
    y16 = splice(host[: int(HOST_S * SR)], ins[: int(INSERT_S * SR)], at)
    return y16, cache.patches(_key("splice", host_t, ins_t, at), y16), at / SR


def localisation(cache: Cache, tracks: dict[str, list[Path]], n_splices: int, seed: int,
                 n_train_splices: int = 24) -> tuple[str, dict]:
    from embedkit.heads.attention import AttentionHead
    from embedkit.highlight import HOP_S, attention_curve, choose, loudness_curve, repetition_curve, tag_curve

    rng = np.random.default_rng(seed)
    pkgs = sorted(tracks)
    halves = {p: (tracks[p][0::2], tracks[p][1::2]) for p in pkgs}
    methods = ["attention × activation (Huang et al.)", "attention weights only", "class activation only",
               "attention × activation, head also trained on training splices (MIL)", "attention weights only, MIL head",
               "teacher tag activity", "loudest window", "most repeated window", "random window"]
    res: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
    info = {"train_tracks": [], "test_splices": 0, "fit_cpu_s": 0.0, "train_accuracy": []}
    labels = cache.emb.labels if hasattr(cache.emb, "labels") else None
    for fold in (0, 1):
        train = [(p, t) for p in pkgs for t in halves[p][fold]]
        test = {p: halves[p][1 - fold] for p in pkgs}
        bags = [cache.patches(_key(t, HOST_S), cache.excerpt(t, HOST_S))["P"] for _, t in train]
        y = np.array([p for p, _ in train])
        t0 = time.process_time()
        head = AttentionHead(hidden=32, l2_grid=(1e-2, 1e-1)).fit(bags, y)
        info["fit_cpu_s"] += time.process_time() - t0
        info["train_tracks"].append(len(train))
        info["train_accuracy"].append(float(np.mean(head.predict(bags) == y)))
        log(f"fold {fold}: attention head on {len(train)} tracks ({head.params_}), {time.process_time() - t0:.0f} CPU s")
        # the multiple-instance variant: the same tracks plus splices made of training tracks only, each labelled
        # with the package of its insert (a weak, track-level label: where the insert is stays unknown)
        trng = np.random.default_rng(seed + 100 + fold)
        tpk = [p for p in pkgs if halves[p][fold]]
        mil_bags, mil_y = list(bags), list(y)
        for _ in range(n_train_splices // 2):
            a, b = trng.choice(tpk, size=2, replace=False)
            _, d, _ = make_splice(cache, trng, halves[a][fold][trng.integers(len(halves[a][fold]))],
                                  halves[b][fold][trng.integers(len(halves[b][fold]))])
            mil_bags.append(d["P"])
            mil_y.append(b)
        t0 = time.process_time()
        mil = AttentionHead(hidden=32, l2_grid=(1e-2, 1e-1)).fit(mil_bags, np.array(mil_y))
        info["fit_cpu_s"] += time.process_time() - t0
        info["mil_train"] = len(mil_y)
        log(f"fold {fold}: MIL attention head on {len(mil_y)} tracks and splices ({mil.params_})")
        ok_pkgs = [p for p in pkgs if test[p]]
        for _ in range(n_splices // 2):
            a, b = rng.choice(ok_pkgs, size=2, replace=False)
            y16, d, ins0 = make_splice(cache, rng, test[a][rng.integers(len(test[a]))], test[b][rng.integers(len(test[b]))])
            dur = y16.size / SR
            ins1 = ins0 + INSERT_S
            ex = head.explain_one(d["P"])
            k = head.output_names.index(b)
            curve_att, _, w = attention_curve(head, d["P"], b)
            curve_mil, _, w_mil = attention_curve(mil, d["P"], b)
            curves = {
                methods[0]: curve_att,
                methods[1]: w,
                methods[2]: ex["activations"][:, k],
                methods[3]: curve_mil,
                methods[4]: w_mil,
                methods[5]: tag_curve(d["tags"], labels)[0],
                methods[6]: loudness_curve(y16, len(d["starts"])),
                methods[7]: repetition_curve(d["P"]),
            }
            for m, c in curves.items():
                s0, s1, *_ = choose(c, d["starts"], dur, INSERT_S)
                res[m].append((float(ins0 <= (s0 + s1) / 2 < ins1), iou(s0, s1, ins0, ins1)))
            r0 = rng.uniform(0, dur - INSERT_S, 200)
            res[methods[-1]].append((float(np.mean((ins0 <= r0 + INSERT_S / 2) & (r0 + INSERT_S / 2 < ins1))),
                                    float(np.mean([iou(r, r + INSERT_S, ins0, ins1) for r in r0]))))
            info["test_splices"] += 1
        log(f"fold {fold}: {info['test_splices']} splices so far")
    rows = []
    for m in methods:
        v = np.array(res[m])
        n = len(v)
        hit, io = v[:, 0].mean(), v[:, 1].mean()
        se = np.sqrt(hit * (1 - hit) / n) if m != methods[-1] else 0.0
        rows.append([m, n, f"{hit:.2f} ± {se:.2f}", f"{io:.2f}", f"{np.mean(v[:, 1] >= 0.5):.2f}"])
        log(f"{m}: hit {hit:.2f}, IoU {io:.2f}")
    md = markdown_table(["method", "splices", "hit rate (centre in insert) ± s.e.", "mean IoU", "IoU ≥ 0.5"], rows)
    info["hop_s"] = HOP_S
    return md, info


def pooling(cache: Cache, tracks: dict[str, list[Path]], jobs: int) -> tuple[str, dict]:
    from embedkit.heads.attention import AttentionHead
    from embedkit.evaluation import nested_cv
    from embedkit.heads import Head

    rows = []
    info: dict = {}

    def compare(task: str, bags: list[np.ndarray], y: np.ndarray, groups, folds: int) -> None:
        Xm = np.stack([b.mean(axis=0) for b in bags]).astype(np.float32)
        Xb = np.empty(len(bags), dtype=object)
        for i, b in enumerate(bags):
            Xb[i] = b
        for name, head, X in (("attention pooling → linear softmax", AttentionHead(hidden=32, l2_grid=(1e-2, 1e-1)), Xb),
                              ("mean pooling → logistic regression", Head(kind="logreg"), Xm),
                              ("mean pooling → SVM (Choi's grid)", Head(kind="svm"), Xm)):
            t0 = time.process_time()
            r = nested_cv(head, X, y, groups=groups, folds=folds, n_jobs=jobs, seed=0)
            a = r.metrics["accuracy"]
            rows.append([task, name, len(y), len(set(y)), r.protocol["outer"], f"{a['mean']:.3f} ± {a['std']:.3f}",
                         f"{r.metrics['macro_f1']['mean']:.3f}", f"{r.chance['accuracy']:.3f}", f"{time.process_time() - t0:.0f}"])
            log(f"{task} / {name}: {a['mean']:.3f} ± {a['std']:.3f}")

    bags, y, g = [], [], []
    for p, ts in tracks.items():
        for t in ts:
            P = cache.patches(_key(t, HOST_S), cache.excerpt(t, HOST_S))["P"]
            for i in range(P.shape[0] // 10):
                bags.append(P[i * 10:(i + 1) * 10])
                y.append(p)
                g.append(str(t))
    compare("package of origin, 30-s items (10 patches)", bags, np.array(y), np.array(g), folds=4)
    info["package_items"] = len(y)
    if FIXTURES.exists():
        from embedkit import audio

        bags, y = [], []
        recs = [p for p in sorted(FIXTURES.iterdir()) if p.suffix in (".ogg", ".wav") and (audio.probe(p).duration_s or 0) >= 20]
        for p in recs:
            P = cache.patches(_key(p, 30.0), cache.excerpt(p, 30.0))["P"]
            for i in range(P.shape[0] // 3):
                bags.append(P[i * 3:(i + 1) * 3])
                y.append(p.stem)
        compare("recording identity, 9-s items (3 patches)", bags, np.array(y), None, folds=3)
        info["recordings"] = len(recs)
    else:
        log(f"fixtures not found at {FIXTURES}: skipping the recording-identity task")
    md = markdown_table(["task", "pooling → classifier", "items", "classes", "outer folds", "accuracy (mean ± std)",
                         "macro-F1", "chance (majority)", "CPU s"], rows)
    return md, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=8, help="tracks per Debian package (≥ 4 needed for a package to take part)")
    ap.add_argument("--splices", type=int, default=60, help="test splices over both folds")
    ap.add_argument("--train-splices", type=int, default=24, help="training splices of the MIL head, over both folds")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "embedkit-bench-highlight")
    ap.add_argument("--skip-pooling", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    load = os.getloadavg()
    t_all, c_all = time.perf_counter(), time.process_time()
    roots = fetch_packages(args.cache, PACKAGES)
    tracks = {p: package_tracks(r, args.tracks, min_s=HOST_S + 5) for p, r in roots.items()}
    tracks = {p: ts for p, ts in tracks.items() if len(ts) >= 4}
    cache = Cache(args.cache)
    pk = ", ".join(f"{p} ({len(ts)})" for p, ts in tracks.items())
    md1, info1 = localisation(cache, tracks, args.splices, args.seed, args.train_splices)
    parts = [
        "### Localising an inserted segment (spliced real music)\n\n" + md1 + "\n\n"
        f"{info1['test_splices']} splices: a {INSERT_S:.0f}-s segment of one package's track pasted (RMS-matched, "
        f"50-ms crossfades, random place) into the middle {HOST_S:.0f} s of another package's track; highlights of "
        f"{INSERT_S:.0f} s. Packages (tracks): {pk}. Two folds by track: the attention head of each fold "
        f"(package of origin, trained from track labels only, {info1['train_tracks']} training tracks, training "
        f"accuracy {', '.join(f'{a:.2f}' for a in info1['train_accuracy'])}) never hears a host or insert track of "
        f"its test splices. The target class is the inserted package. The MIL head also learns from "
        f"{args.train_splices} splices built from training tracks only, labelled with their insert's package (where "
        f"the insert is, it is never told). Random window: expectation over 200 uniform "
        f"draws per splice. Head fitting: {info1['fit_cpu_s']:.0f} CPU s in all."
    ]
    if not args.skip_pooling:
        md2, info2 = pooling(cache, tracks, args.jobs)
        parts.append(
            "### Track-level accuracy: attention pooling vs mean pooling (same nested folds)\n\n" + md2 + "\n\n"
            "The same outer folds for all three rows of a task (same labels, groups and seed); each head picks its "
            "hyper-parameters by its own inner 3-fold CV on the training folds (attention: L2 ∈ {0.01, 0.1} on the "
            "classifier, 32 hidden units; logistic regression: C; SVM: Choi's grid). Package of origin: the middle "
            f"{HOST_S:.0f} s of each track cut into three 30-s items, folds grouped by track. Recording identity: "
            f"{info2.get('recordings', 0)} fixture recordings (30 s each) cut into 9-s items."
        )
    body = "\n\n".join(parts) + (
        f"\n\nTotal {(time.perf_counter() - t_all) / 60:.1f} min wall, {time.process_time() - c_all:.0f} CPU s of this "
        f"process (embeddings cached under {args.cache} are reused by reruns). Load average at start: "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on a shared machine ({machine_line()})."
    )
    print(body)
    if not args.no_write:
        write_section("highlight", body, script="benchmarks/highlight.py")


if __name__ == "__main__":
    main()
