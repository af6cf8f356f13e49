"""Benchmark the on-disk IVF-PQ index (issue 14, "indexes past RAM") at a stated size and memory cap.

N synthetic 640-d vectors shaped like real ones (the search benchmark's generator: a Gaussian mixture
following the spectrum of the real fixture store's vectors when that store is cached, else its fallback
spectrum — the table says which) are written batch by batch to a float32 memory-mapped file (the exact
vectors "on disk", as the store's memory-mapped shards hold them). `embedkit.index.ondisk.build_ondisk`
then builds IVF-PQ with `OnDiskInvertedLists` from batches (training sample + one shard in memory),
tuned to recall@10 >= --target-recall with re-ranking against the memory-mapped exact vectors.

Reported: what `choose_index` picks for N at --memory (and at 10M), build wall and CPU seconds, peak RSS
growth of the build against the memory cap (RSS includes page cache of the memory-mapped files that the
kernel can drop: an upper bound), recall@10 on held-out queries against exact (streamed) search,
single-query p50/p99 latency on one thread with re-ranking. The local-vs-Ray embedding comparison of
issue 14 is NOT measured here (no Ray engine yet; see docs/scale.md).

    python benchmarks/scale.py [--n 10000000] [--memory 2G] [--work /tmp/embedkit-bench-scale] [--no-write]
"""
from __future__ import annotations

import argparse
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


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000, help="vectors (the issue's bar: >= 10M)")
    ap.add_argument("--memory", default="256M", help="memory cap for the index (planner budget)")
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--latency-queries", type=int, default=200)
    ap.add_argument("--target-recall", type=float, default=0.9)
    ap.add_argument("--work", default="/tmp/embedkit-bench-scale")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    import faiss

    from embedkit.index.ondisk import build_ondisk, exact_topk_streamed
    from embedkit.index.plan import (
        ONDISK_KIND,
        choose_index,
        format_bytes,
        ondisk_build_bytes,
        ondisk_disk_bytes,
        parse_memory,
    )
    from embedkit.index.transform import VectorTransform

    n, budget = int(args.n), parse_memory(args.memory)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    real = None
    rp = real_store_path() if (CACHE / "real_store" / "manifest.json").exists() else None
    if rp is not None:
        from embedkit.store import Store

        with Store.open(rp) as st:
            real = st.patch_vectors()[2] if st.has_patches else st.vectors()
    spec = spectrum_from(real)
    shape_note = (f"spectrum of the real fixture store ({real.shape[0]} vectors)" if real is not None
                  else "fallback spectrum (no real store cached at " + str(CACHE / "real_store") + ")")

    # 1. the exact vectors, on disk (memory-mapped like the store's shards), written batch by batch
    t0 = time.perf_counter()
    xb = np.lib.format.open_memmap(work / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, D))
    for a in range(0, n, args.batch):
        b = min(n, a + args.batch)
        xb[a:b] = synthetic(b - a, spec, seed=1000 + a // args.batch)
    xb.flush()
    del xb
    xb = np.load(work / "vectors.npy", mmap_mode="r")
    xq = synthetic(args.queries, spec, seed=7)  # held out: not in the index
    gen_s = time.perf_counter() - t0

    def batches():
        for a in range(0, n, args.batch):
            yield np.arange(a, min(n, a + args.batch), dtype=np.int64), np.asarray(xb[a : a + args.batch])

    def exact(ids):
        ids = np.asarray(ids)
        order = np.argsort(ids)
        out = np.empty((ids.size, D), np.float32)
        out[order] = xb[ids[order]]
        return out

    auto = choose_index(n, D, budget)
    try:
        auto10m = choose_index(10_000_000, D, budget)
        at10m = f"**{auto10m.kind}** ({auto10m.reason})"
    except ValueError as exc:
        at10m = f"refused ({exc})"
    plan = auto if auto.kind == ONDISK_KIND else choose_index(n, D, budget, kind=ONDISK_KIND)
    rss0, c0, t0 = rss(), time.process_time(), time.perf_counter()
    vi = build_ondisk(batches, n, D, work, "scale", plan=plan, exact=exact, target_recall=args.target_recall, k=K,
                      n_tune_queries=min(200, args.queries))
    build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    build_peak = peak_rss() - rss0
    vi.save(work, "scale")

    # 2. recall on held-out queries against exact search (streamed over the memory-mapped vectors)
    tr = VectorTransform(metric="cosine")
    _, truth = exact_topk_streamed(batches, tr.transform(xq), K, transform=tr)
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
    row = {
        "n": n, "plan": f"{plan.kind} {plan.factory_string()}", "params": vi.search_params,
        "resident": format_bytes(plan.memory_bytes), "cap": format_bytes(budget),
        "build_model": format_bytes(ondisk_build_bytes(D, plan.params)),
        "build_peak_rss": format_bytes(build_peak), "ivfdata": format_bytes((work / "scale.ivfdata").stat().st_size),
        "ivfdata_est": format_bytes(ondisk_disk_bytes(n, plan.params)),
        "build_s": round(build_s, 1), "build_cpu_s": round(build_cpu, 1), "gen_s": round(gen_s, 1),
        "recall": round(rec, 4), "recall_no_rerank": round(rec_pq, 4), "tuned_recall": vi.recall_.measured,
        "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
    }
    print(row, flush=True)
    load = os.getloadavg()[0]
    md = "\n".join([
        f"On-disk IVF-PQ (`embedkit.index.ondisk`) over **{n:,}** synthetic {D}-d vectors ({shape_note}); exact "
        f"vectors in a memory-mapped file; memory cap {row['cap']}. Load average at the end: {load:.1f} on "
        f"{os.cpu_count()} cores (a shared, loaded machine: times are pessimistic). "
        + ("**Below the issue's 10M bar**: run `python benchmarks/scale.py --n 10000000` on a quiet machine "
           "(the exact vectors then take 25.6 GB of disk)." if n < 10_000_000 else ""),
        "",
        f"Planner at {row['cap']}: {n:,} vectors -> **{auto.kind}** ({auto.reason}); 10M vectors -> "
        f"{at10m}; 10M vectors at 256 MiB -> **{choose_index(10_000_000, D, 2**28).kind}**.",
        "",
        markdown_table(
            ["vectors", "index", "search params", "resident (est.)", "build peak (model)", "build peak RSS growth",
             "lists file", "build s (CPU s)", f"recall@{K} re-ranked", "recall@10 PQ only", "p50 / p99 ms (1 thread)"],
            [[f"{n:,}", row["plan"], ", ".join(f"{k}={v}" for k, v in vi.search_params.items()), row["resident"],
              row["build_model"], row["build_peak_rss"], f"{row['ivfdata']} (est. {row['ivfdata_est']})",
              f"{row['build_s']} ({row['build_cpu_s']})", row["recall"], row["recall_no_rerank"],
              f"{row['p50_ms']} / {row['p99_ms']}"]],
        ),
        "",
        "Recall is measured on held-out queries against exact search streamed over all vectors; the build's "
        "own tuning (stored vectors as queries, self left out) gave " + str(row["tuned_recall"]) + ". Peak RSS "
        "growth includes pages of the memory-mapped files (reclaimable page cache), so it is an upper bound.",
    ])
    if not args.no_write:
        write_section("scale", md, script="benchmarks/scale.py")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
