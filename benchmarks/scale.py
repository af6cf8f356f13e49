"""Benchmarks of issue 14 ("beyond one machine"): the Ray engine against the local one, and the on-disk index.

``engines`` (timed: run it under the timing lock): the local engine and the Ray engine (a local Ray cluster
with every CPU of this machine; the pool then has ``max(1, cpus - 1)`` actors) embed the same >= 1 h of
real Debian game music (benchmarks/heads.py's ``fetch_packages`` cache) into two stores, one run each.
Reported: wall time and × real time of each, parallel efficiency (Ray / local throughput, target >= 0.9),
Ray's start-up (``ray.init``, the actors' model load) stated apart, and whether the two stores are
bit-identical.

``index``: N synthetic 640-d vectors shaped like real ones (the search benchmark's generator: a Gaussian
mixture following the spectrum of real msd_vgg per-patch vectors from ``--real-store``, else its fallback
spectrum — the table says which) are written batch by batch to a float32 memory-mapped file (the exact
vectors "on disk", as the store's memory-mapped shards hold them). `embedkit.index.ondisk.build_ondisk`
then builds IVF-PQ with `OnDiskInvertedLists` from batches (training sample + one shard in memory), tuned
to recall@10 >= --target-recall with re-ranking against the memory-mapped exact vectors. Two stages:
``--stage build`` (untimed: run it with ``nice -n 10``; vectors, exact truth of held-out queries, index)
and ``--stage measure`` (timed, under the lock: recall@10 and single-query latency); ``all`` does both.
Reported: the planner's pick for N at --memory (and at 10M), build wall and CPU seconds, peak growth of
heap (RssAnon) and RSS during the build against the planner's model, recall@10 on held-out queries against
exact (streamed) search, p50/p99 latency on one thread with re-ranking.

    flock /tmp/embedkit-timing.lock python benchmarks/scale.py engines [--packages singularity-music]
    nice -n 10 python benchmarks/scale.py index --stage build --n 10000000 --memory 256M --queries 1000 --target-recall 0.95 --real-store STORE
    flock /tmp/embedkit-timing.lock python benchmarks/scale.py index --stage measure
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from _report import markdown_table, write_section  # noqa: E402
from search import CACHE, D, real_store_path, spectrum_from, synthetic  # noqa: E402

K = 10


WORK_MARK = ".embedkit-bench-scale"  # names a --work folder as this script's own


def fresh_work(path: Path) -> Path:
    """An empty ``path`` for this run: a folder this script made before (it holds WORK_MARK) is cleared; a
    non-empty folder without the mark is someone else's and is refused, untouched."""
    if path.exists() and any(path.iterdir()) and not (path / WORK_MARK).exists():
        raise SystemExit(f"{path}: not empty and not a work folder of benchmarks/scale.py (no {WORK_MARK}); "
                         "choose another --work")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    (path / WORK_MARK).write_text("benchmarks/scale.py work folder: removed after measuring unless --keep\n")
    return path


def publish(args, section: str, md: str, work: Path) -> None:
    """Write ``md`` as ``section`` of docs/benchmarks.md (unless --no-write); remove ``work`` (unless --keep),
    only when it carries this script's mark."""
    if not args.no_write:
        write_section(section, md, script=f"benchmarks/scale.py {args.cmd}")
    if not args.keep and (work / WORK_MARK).exists():
        shutil.rmtree(work, ignore_errors=True)


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class AnonPeak:
    """Peak anonymous resident memory (``RssAnon``: heap, not page cache of memory-mapped files) of this
    process while the block runs, sampled every 0.2 s by a thread; ``.peak`` bytes above the level at entry."""

    def __enter__(self) -> AnonPeak:
        import threading

        self.base = self.peak = 0
        self.base = _rss_anon()
        self._stop = threading.Event()

        def watch() -> None:
            while not self._stop.wait(0.2):
                self.peak = max(self.peak, _rss_anon() - self.base)

        self._t = threading.Thread(target=watch, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_anon() - self.base)


def _rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def _real_vectors(path: str | None) -> tuple[np.ndarray | None, str]:
    """Real msd_vgg vectors (per-patch when the store has them) to shape the synthetic ones, and their origin."""
    from embedkit.store import Store

    rp = Path(path) if path else (real_store_path() if (CACHE / "real_store" / "manifest.json").exists() else None)
    if rp is None:
        return None, "fallback spectrum (no real store given: --real-store, nor cached at " + str(CACHE / "real_store") + ")"
    with Store.open(rp) as st:
        real = st.patch_vectors()[2] if st.has_patches else st.vectors()
        what = "per-patch" if st.has_patches else "track"
        model = st.manifest.get("model")
    return np.asarray(real, np.float32), f"spectrum of {real.shape[0]} real {model} {what} vectors ({rp})"


def index_build(args) -> None:
    """Stage 1 (untimed, run it with nice): vectors on disk, exact truth for held-out queries, the index."""
    from embedkit.index.ondisk import build_ondisk, exact_topk_streamed
    from embedkit.index.plan import ONDISK_KIND, choose_index, parse_memory
    from embedkit.index.transform import VectorTransform

    n, budget = int(args.n), parse_memory(args.memory)
    work = fresh_work(Path(args.work))
    real, shape_note = _real_vectors(args.real_store)
    spec = spectrum_from(real)
    t0 = time.perf_counter()
    xb = np.lib.format.open_memmap(work / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, D))
    for a in range(0, n, args.batch):
        b = min(n, a + args.batch)
        xb[a:b] = synthetic(b - a, spec, seed=1000 + a // args.batch)
        if (a // args.batch) % 20 == 0:
            print(f"generated {b:,} / {n:,} ({time.perf_counter() - t0:.0f} s)", flush=True)
    xb.flush()
    del xb
    xb = np.load(work / "vectors.npy", mmap_mode="r")
    xq = synthetic(args.queries, spec, seed=7)  # held out: not in the index
    np.save(work / "queries.npy", xq)
    gen_s = time.perf_counter() - t0
    batches = _batches(xb, n, args.batch)
    tr = VectorTransform(metric="cosine")
    t1 = time.perf_counter()
    _, truth = exact_topk_streamed(batches, tr.transform(xq), K, transform=tr)
    np.save(work / "truth.npy", truth)
    truth_s = time.perf_counter() - t1
    print(f"vectors {gen_s:.0f} s, exact truth {truth_s:.0f} s", flush=True)

    auto = choose_index(n, D, budget)
    plan = auto if auto.kind == ONDISK_KIND else choose_index(n, D, budget, kind=ONDISK_KIND)
    rss0, c0, t0 = rss(), time.process_time(), time.perf_counter()
    with AnonPeak() as anon:
        vi = build_ondisk(batches, n, D, work, "scale", plan=plan, exact=_exact(xb), target_recall=args.target_recall,
                          k=K, n_tune_queries=min(200, args.queries))
    build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    info = {"n": n, "memory": args.memory, "shape_note": shape_note, "auto_kind": auto.kind, "auto_reason": auto.reason,
            "gen_s": round(gen_s, 1), "truth_s": round(truth_s, 1), "build_s": round(build_s, 1),
            "build_cpu_s": round(build_cpu, 1), "build_peak_rss": peak_rss() - rss0, "build_peak_anon": anon.peak,
            "tuned_recall": vi.recall_.measured, "load_end": os.getloadavg()[0]}
    vi.save(work, "scale")
    (work / "build.json").write_text(json.dumps(info, indent=1))
    print(info, flush=True)


def _batches(xb: np.ndarray, n: int, batch: int):
    def batches():
        for a in range(0, n, batch):
            yield np.arange(a, min(n, a + batch), dtype=np.int64), np.asarray(xb[a : a + batch])
    return batches


def _exact(xb: np.ndarray):
    def exact(ids):
        ids = np.asarray(ids)
        order = np.argsort(ids)
        out = np.empty((ids.size, D), np.float32)
        out[order] = xb[ids[order]]
        return out
    return exact


def index_measure(args) -> None:
    """Stage 2 (timed, under the lock): recall@10 of the saved index on held-out queries, single-query latency."""
    import faiss

    from embedkit.index import VectorIndex
    from embedkit.index.plan import choose_index, format_bytes, ondisk_build_bytes, ondisk_disk_bytes, parse_memory

    work = Path(args.work)
    info = json.loads((work / "build.json").read_text())
    n, budget = int(info["n"]), parse_memory(info["memory"])
    xb = np.load(work / "vectors.npy", mmap_mode="r")
    exact = _exact(xb)
    xq, truth = np.load(work / "queries.npy"), np.load(work / "truth.npy")
    rss0 = rss()
    vi = VectorIndex.load(work, "scale")
    plan = vi.plan
    loaded = rss() - rss0
    _, found = vi.search(xq, K, rerank=exact)
    rec = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / K for a, b in zip(found, truth)]))
    _, found_pq = vi.search(xq, K)
    rec_pq = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / K for a, b in zip(found_pq, truth)]))
    faiss.omp_set_num_threads(1)
    lat = []
    for i in range(min(args.latency_queries, xq.shape[0])):
        t = time.perf_counter()
        vi.search(xq[i : i + 1], K, rerank=exact)
        lat.append(time.perf_counter() - t)
    faiss.omp_set_num_threads(os.cpu_count() or 2)
    lat = np.array(lat) * 1e3
    try:
        auto10m = choose_index(10_000_000, D, budget)
        at10m = f"**{auto10m.kind}** ({auto10m.reason})"
    except ValueError as exc:
        at10m = f"refused ({exc})"
    row = {
        "n": n, "plan": f"{plan.kind} {plan.factory_string()}", "params": vi.search_params,
        "resident": format_bytes(plan.memory_bytes), "cap": format_bytes(budget), "loaded_rss": format_bytes(loaded),
        "build_model": format_bytes(ondisk_build_bytes(D, plan.params)),
        "build_peak_rss": format_bytes(info["build_peak_rss"]), "build_peak_anon": format_bytes(info["build_peak_anon"]),
        "ivfdata": format_bytes((work / "scale.ivfdata").stat().st_size),
        "ivfdata_est": format_bytes(ondisk_disk_bytes(n, plan.params)),
        "recall": round(rec, 4), "recall_no_rerank": round(rec_pq, 4),
        "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
    }
    print(row, flush=True)
    load = os.getloadavg()[0]
    md = "\n".join([
        f"On-disk IVF-PQ (`embedkit.index.ondisk`) over **{n:,}** synthetic {D}-d vectors ({info['shape_note']}); "
        f"exact vectors in a memory-mapped file ({format_bytes(xb.nbytes)}); memory cap (planner budget) {row['cap']}. "
        f"Build (stage 1, `nice -n 10`, not under the timing lock; load average {info['load_end']:.1f} at its end): "
        f"{info['build_s']} s wall, {info['build_cpu_s']} CPU-s (vectors generated in {info['gen_s']} s, exact truth "
        f"of the held-out queries streamed in {info['truth_s']} s). Recall and latency (stage 2) under the timing lock, "
        f"load average {load:.1f} on {os.cpu_count()} cores."
        + ("" if n >= 10_000_000 else " **Below the issue's 10M bar.**"),
        "",
        f"Planner at {row['cap']}: {n:,} vectors -> **{info['auto_kind']}** ({info['auto_reason']}); 10M vectors -> "
        f"{at10m}; 10M vectors at 256 MiB -> **{choose_index(10_000_000, D, 2**28).kind}**.",
        "",
        markdown_table(
            ["vectors", "index", "search params", "resident (est.) / measured on load", "build peak: model / heap (RssAnon) / RSS",
             "lists file", f"recall@{K} re-ranked", "recall@10 PQ only", "p50 / p99 ms (1 thread)"],
            [[f"{n:,}", row["plan"], ", ".join(f"{k}={v}" for k, v in vi.search_params.items()),
              f"{row['resident']} / {row['loaded_rss']}",
              f"{row['build_model']} / {row['build_peak_anon']} / {row['build_peak_rss']}",
              f"{row['ivfdata']} (est. {row['ivfdata_est']})", row["recall"], row["recall_no_rerank"],
              f"{row['p50_ms']} / {row['p99_ms']}"]],
        ),
        "",
        f"Recall is measured on {xq.shape[0]} held-out queries against exact search streamed over all vectors; the "
        f"build's own tuning (stored vectors as queries, self left out) gave {info['tuned_recall']}. Build peak: "
        "the planner's model (`plan.ondisk_build_bytes`), the measured growth of anonymous memory (heap: what a "
        "memory cap limits) and of RSS (which also counts reclaimable page cache of the memory-mapped files).",
    ])
    publish(args, "scale", md, work)


ENGINE_PACKAGES = ["singularity-music"]  # 16 tracks, 64 min of real game music (Debian, free)
HEADS_CACHE = Path("/tmp/embedkit-bench-heads")  # benchmarks/heads.py's package cache, reused


def engines(args) -> None:
    """Local engine vs Ray engine on the same >= 1 h of real music, one run each (run it under the timing lock)."""
    import ray
    import soundfile as sf

    from heads import fetch_packages

    from embedkit.collection import embed_into_store
    from embedkit.engines import engine_for
    from embedkit.spec import VectorSpec
    from embedkit.store import Store

    roots = fetch_packages(HEADS_CACHE, args.packages.split(","))
    files = sorted(str(p) for r in roots.values() for p in r.rglob("*") if p.suffix.lower() in (".ogg", ".mp3", ".flac"))
    hours = sum(sf.info(f).duration for f in files) / 3600
    if hours < 1.0:
        raise SystemExit(f"only {hours:.2f} h of music in {args.packages}: the issue asks for >= 1 h")
    work = fresh_work(Path(args.work))
    load0 = os.getloadavg()[0]

    t = time.perf_counter()
    emb = VectorSpec.for_model("msd_vgg", layers=None, aggregation="mean", excerpt_s=None).embedder()
    model_load_s = time.perf_counter() - t

    def one(name: str, engine) -> dict:
        c0, t0 = time.process_time(), time.perf_counter()
        summary = embed_into_store(files, work / name, embedder=emb, progress=False, engine=engine)
        return {"summary": summary, "wall_s": time.perf_counter() - t0, "driver_cpu_s": time.process_time() - c0}

    local = one("local", None)
    print("local", {k: v for k, v in local.items() if k != "summary"}, flush=True)
    t = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    ray_init_s = time.perf_counter() - t
    wrapped = []

    def engine(e):
        wrapped.append(engine_for("ray")(e))
        return wrapped[-1]

    rayrun = one("ray", engine)
    stats = wrapped[0].stats
    ray.shutdown()
    load1 = os.getloadavg()[0]
    with Store.open(work / "local") as a, Store.open(work / "ray") as b:
        ia = sorted((it.id, it.path, it.row) for it in a.items("ok"))
        ib = sorted((it.id, it.path, it.row) for it in b.items("ok"))
        same = [(i, p) for i, p, _ in ia] == [(i, p) for i, p, _ in ib] and np.array_equal(
            np.asarray(a.vectors())[[r for *_, r in ia]], np.asarray(b.vectors())[[r for *_, r in ib]])
    audio_s = local["summary"]["audio_hours"] * 3600
    ray_cpu = rayrun["driver_cpu_s"] + stats["actor_cpu_s"]  # raylet/GCS processes not counted
    x_local = audio_s / local["wall_s"]
    steady_ray = rayrun["wall_s"] - stats["actor_init_s"]
    x_ray, x_ray_steady = audio_s / rayrun["wall_s"], audio_s / steady_ray
    row = {"files": len(files), "hours": round(audio_s / 3600, 3), "model_load_s": round(model_load_s, 1),
           "local_wall_s": round(local["wall_s"], 1), "local_x": round(x_local, 1),
           "ray_init_s": round(ray_init_s, 1), "actor_init_s": round(stats["actor_init_s"], 1),
           "actors": stats.get("actors"), "ray_wall_s": round(rayrun["wall_s"], 1), "ray_x": round(x_ray, 1),
           "ray_x_steady": round(x_ray_steady, 1), "eff_steady": round(x_ray_steady / x_local, 3),
           "eff_total": round(x_ray / x_local, 3), "identical": same, "load": (round(load0, 1), round(load1, 1)),
           "local_cpu_s": round(local["driver_cpu_s"], 1), "ray_driver_cpu_s": round(rayrun["driver_cpu_s"], 1),
           "ray_actor_cpu_s": round(stats["actor_cpu_s"], 1), "eff_cpu": round(local["driver_cpu_s"] / ray_cpu, 3),
           "local_cpu_per_h": round(local["driver_cpu_s"] / (audio_s / 3600), 1),
           "ray_cpu_per_h": round(ray_cpu / (audio_s / 3600), 1)}
    print(row, flush=True)
    md = "\n".join([
        f"Local engine vs Ray engine (`embed --store S` vs `embed --store S --engine ray`, msd_vgg fp32, whole files) on "
        f"the same **{row['hours']} h** of real music ({len(files)} tracks of the Debian package(s) "
        f"{args.packages}), one run each, one after the other, under the timing lock; load average {row['load'][0]} "
        f"before, {row['load'][1]} after, on {os.cpu_count()} cores (shared machine: other engineers' niced jobs ran).",
        "",
        markdown_table(
            ["engine", "start-up (stated apart)", "wall s", "× real time", "× real time without start-up",
             "CPU-s (per audio hour)", "efficiency vs local: wall / CPU-s"],
            [["local (1 process)", f"model load {row['model_load_s']} s (before the run)", row["local_wall_s"],
              row["local_x"], row["local_x"], f"{row['local_cpu_s']} ({row['local_cpu_per_h']})", "1 / 1 (reference)"],
             [f"ray ({row['actors']} actor on a {os.cpu_count()}-CPU local cluster)",
              f"ray.init {row['ray_init_s']} s (before the run); actor model load {row['actor_init_s']} s (inside the run)",
              row["ray_wall_s"], row["ray_x"], row["ray_x_steady"],
              f"{row['ray_driver_cpu_s']} driver + {row['ray_actor_cpu_s']} actor ({row['ray_cpu_per_h']})",
              f"**{row['eff_steady']}** without start-up ({row['eff_total']} with it) / **{row['eff_cpu']}**"]],
        ),
        "",
        f"Vectors, ids and paths of the two stores bit-identical: **{'yes' if same else 'NO'}**. Parallel efficiency = "
        "Ray throughput / local throughput on the same cores (target >= 0.9), from wall time (sensitive to what "
        "else the shared machine ran during each run) and from CPU-seconds (local: the process; Ray: the driver "
        "plus the actor processes, model load included; Ray's raylet/GCS daemons not counted), which is robust to "
        "load. On 2 CPUs the pool has one actor (`max(1, cpus - 1)`: a CPU stays free for Ray Data's reads), whose "
        "TensorFlow still uses both cores.",
    ])
    publish(args, "scale_engines", md, work)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ix = sub.add_parser("index", help="the on-disk IVF-PQ index at N vectors")
    ix.add_argument("--stage", choices=["build", "measure", "all"], default="all",
                    help="build: vectors + truth + index (untimed: run with nice); measure: recall + latency (timed)")
    ix.add_argument("--n", type=int, default=10_000_000, help="vectors (the issue's bar: >= 10M)")
    ix.add_argument("--memory", default="256M", help="memory cap for the index (planner budget)")
    ix.add_argument("--batch", type=int, default=50_000)
    ix.add_argument("--queries", type=int, default=200)
    ix.add_argument("--latency-queries", type=int, default=200)
    ix.add_argument("--target-recall", type=float, default=0.9)
    ix.add_argument("--real-store", default=None, help="a store of real msd_vgg vectors to shape the synthetic ones")
    ix.add_argument("--work", default="/tmp/embedkit-bench-scale")
    ix.add_argument("--keep", action="store_true", help="keep the work folder (25.6 GB at 10M) after measuring")
    ix.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    en = sub.add_parser("engines", help="local vs Ray engine on the same >= 1 h of real music (timed)")
    en.add_argument("--packages", default=",".join(ENGINE_PACKAGES), help="Debian music packages (comma-separated)")
    en.add_argument("--work", default="/tmp/embedkit-bench-s/engines")
    en.add_argument("--keep", action="store_true", help="keep the two stores")
    en.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    if args.cmd == "engines":
        engines(args)
    if args.cmd == "index":
        if args.stage in ("build", "all"):
            index_build(args)
        if args.stage in ("measure", "all"):
            index_measure(args)


if __name__ == "__main__":
    main()
