"""Embed a whole music collection into a resumable store: discovery → resume plan → embed → store.

`embed_into_store` is what ``embedkit embed DIR... --store STORE`` runs:

1. find the files (`embedkit.discovery`);
2. open the store (taking its writer lock) or create it with this run's model and settings; an
   existing store's settings are reused, and asking for other ones is refused naming both fingerprints;
3. plan: a file whose path, size and mtime match a stored item is skipped without reading it; a file
   that failed before is skipped unless ``retry_failed``; the rest are hashed (sha256), and a hash that
   matches a stored vector is a moved file (its item follows it) or a copy (it shares the vector);
4. embed what is left with the model loaded once (decoding overlapped with the network), committing
   every ``commit_every`` files or ``commit_seconds`` seconds, so a kill loses at most that batch;
5. return a summary dict (also the ``--json`` output of the command).

The model is loaded only when something needs embedding, so a no-op rerun costs a folder walk and
one SQLite query.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from . import pretrained
from .discovery import Discovery, FoundFile, discover
from .progress import bar as progress_bar, default_enabled
from .errors import EmbedkitError
from .spec import SpecError, SpecMismatchError, VectorSpec
from .store import Item, Store, StoreError, StoreExistsError, StoreMismatchError, file_sha256, stat_matches

log = logging.getLogger("embedkit")


@dataclass
class _Plan:
    """What to do with each discovered file."""

    to_hash: list[FoundFile] = field(default_factory=list)  # new or changed: hash, then embed unless known
    unchanged: int = 0
    restored: list[tuple[FoundFile, int]] = field(default_factory=list)  # "missing" items whose file is back
    failed_before: list[tuple[str, str]] = field(default_factory=list)  # (path, error) not retried


@dataclass(frozen=True)
class _Settings:
    """What this run stores: the vector spec, and whether per-patch vectors / tags are kept."""

    spec: VectorSpec
    patches: bool
    tags: bool


def _new_spec(emb: Any, *, model: str | None, layers: Any, aggregate: str | None, excerpt_s: float | None,
              precision: str | None) -> VectorSpec:
    """The spec of a new store: the given embedder's (or model's) vectors with these settings."""
    try:
        if emb is not None:
            return VectorSpec.for_embedder(emb, layers=layers, aggregation=aggregate or "mean", excerpt_s=excerpt_s,
                                           precision=precision)
        prec = "fp32" if precision in (None, "auto") else precision  # auto: resolved when the model loads
        return VectorSpec.for_model(model or pretrained.DEFAULT_MODEL, layers=layers, aggregation=aggregate or "mean",
                                    excerpt_s=excerpt_s, precision=prec)
    except SpecError as exc:
        raise EmbedkitError(_option_hint(str(exc))) from None


def _option_hint(msg: str) -> str:
    if "excerpt" in msg:
        return f"--excerpt: {msg}"
    if "layer" in msg:
        return f"--layers: {msg}"
    return msg


def _manifest_extras(emb: Any, s: _Settings) -> dict:
    return {
        "patch_dim": True if s.patches else None,
        "n_tags": len(emb.labels) if s.tags else 0,
        "tag_labels": list(emb.labels) if s.tags else None,
        "sample_rate": getattr(emb, "sample_rate", None),
    }


def _plan(found: list[FoundFile], index: dict[str, Item], *, retry_failed: bool, errors: dict[str, str]) -> _Plan:
    plan = _Plan()
    for f in found:
        known = index.get(f.path)
        if known is None:
            plan.to_hash.append(f)
            continue
        same = stat_matches(known, f.size, f.mtime)  # the freshness rule's cheap half; else the hash decides
        has_vec = known.row is not None
        if same and has_vec and known.status == "ok":
            plan.unchanged += 1
        elif same and has_vec and known.status == "missing":
            plan.restored.append((f, known.id))
        elif same and known.status == "failed" and not retry_failed:
            plan.failed_before.append((f.path, errors.get(f.path) or "failed before"))
        else:
            plan.to_hash.append(f)
    return plan


def _hash_all(files: list[FoundFile], workers: int, progress: bool) -> list[str | BaseException]:
    """sha256 of each file (parallel reads); an OSError in place of the hash when a file cannot be read."""

    def one(f: FoundFile) -> str | BaseException:
        try:
            return file_sha256(f.path)
        except OSError as exc:
            return exc

    if not files:
        return []
    bar = progress_bar(total=len(files), desc="hashing", enabled=progress, leave=False, unit="file")
    out: list[str | BaseException] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for h in pool.map(one, files):
            out.append(h)
            bar.update(1)
    bar.close()
    return out


def _resolve_settings(
    st: Store,
    *,
    model: str | None,
    emb: Any,
    layers: Any,
    aggregate: str | None,
    excerpt_s: float | None,
    precision: str | None,
    patches: bool | None,
    tags: bool | None,
) -> _Settings:
    """This run's settings for an existing store: the store's spec, with what was given checked against it
    (anything different is refused naming both sides). A given embedder must make the store's vectors."""
    base = st.spec
    precision = None if precision == "auto" else precision  # auto on an existing store: the store's precision
    if patches and not st.has_patches:
        raise StoreError(f"{st.path}: store was created without --patches; use a new store for per-patch vectors")
    if tags and not st.has_tags:
        raise StoreError(f"{st.path}: store was created without --tags; use a new store for tag probabilities")
    try:
        if model is not None and model != base.model:
            st.check_spec(VectorSpec.for_model(model, layers=None, aggregation=aggregate or base.aggregation,
                                               excerpt_s=excerpt_s, precision=precision or base.precision))
        want = base if layers is None else base.with_layers(layers)
        changes = {k: v for k, v in (("aggregation", aggregate), ("excerpt_s", excerpt_s), ("precision", precision))
                   if v is not None}
        want = want.replace(**changes) if changes else want
    except SpecError as exc:
        raise EmbedkitError(_option_hint(str(exc))) from None
    st.check_spec(want)
    if emb is not None:
        st.check_spec(VectorSpec.for_embedder(emb, layers=base.layers, aggregation=base.aggregation,
                                              excerpt_s=base.excerpt_s, precision=base.precision),
                      what=f"the model {getattr(emb, 'name', '?')}")
    return _Settings(base, st.has_patches, st.has_tags)


def embed_into_store(
    inputs: Sequence[str | os.PathLike],
    store: str | os.PathLike,
    *,
    embedder: Any = None,
    model: str | None = None,
    layers: Any = None,
    aggregate: str | None = None,
    excerpt_s: float | None = None,
    patches: bool | None = None,
    tags: bool | None = None,
    from_list: str | os.PathLike | IO[str] | None = None,
    extensions: str | Sequence[str] | None = None,
    globs: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    include_hidden: bool = False,
    follow_symlinks: bool = True,
    workers: int = 2,
    batch_size: int = 32,
    retry_failed: bool = False,
    wait: float = 0.0,
    progress: bool | None = None,
    precision: str | None = None,
    commit_every: int = 64,
    commit_seconds: float = 10.0,
    on_failure: Callable[[str, str], None] | None = None,
    engine: Callable[[Any], Any] | None = None,
) -> dict:
    """Embed the audio files under ``inputs`` (files and folders) into the store at ``store``.

    ``embedder``: an `embedkit.Embedder` (default: the store's ``spec.embedder()``, loaded only if
    something needs embedding). ``layers``/``aggregate``/``excerpt_s``/``precision``/``patches``/``tags``:
    settings of a new store (a `VectorSpec`); None reuses an existing store's (different ones are refused).
    ``excerpt_s``: None = the whole file, else finite seconds > 0. ``wait``: seconds to wait for another writer. ``progress``: tqdm bar on stderr
    (default: when stderr is a terminal or EMBEDKIT_PROGRESS=1).
    ``engine``: wraps the loaded embedder for the embedding step (`embedkit.engines.engine_for`, e.g. the
    Ray engine); None = this process. The store is written here either way.

    Returns the run summary: ``found, embedded, skipped, unchanged, moved, copies, restored,
    previously_failed, failed, failures [{path, error}], ignored {reason: n}, audio_hours, wall_s,
    x_realtime, store {embedded, failed, missing}, settings_fingerprint, ...``.
    """
    t0 = time.perf_counter()
    progress = default_enabled() if progress is None else progress
    disc: Discovery = discover(
        inputs,
        from_list=from_list,
        extensions=extensions,
        globs=globs,
        exclude=exclude,
        include_hidden=include_hidden,
        follow_symlinks=follow_symlinks,
    )
    emb = embedder
    store_path = os.fspath(store)
    exists = os.path.exists(os.path.join(store_path, "manifest.json"))
    if not exists and not disc.files:
        where = ", ".join(os.fspath(p) for p in inputs) or "the list"
        detail = "; ".join(f"{p}: {r}" for p, r in disc.errors[:3])
        raise EmbedkitError(f"no audio files found in {where}" + (f" ({detail})" if detail else ""))

    st: Store | None = None
    if exists:
        st = Store.open(store_path, mode="a", wait=wait)
    else:
        spec = _new_spec(emb, model=model, layers=layers, aggregate=aggregate, excerpt_s=excerpt_s, precision=precision)
        if emb is None:  # options were checked above, before the model loads; the store takes the loaded model's spec
            emb = _load_auto(spec, batch_size) if precision == "auto" else _load(spec, batch_size)
            spec = _new_spec(getattr(emb, "embedder", emb), model=model, layers=layers, aggregate=aggregate,
                             excerpt_s=excerpt_s, precision=getattr(emb, "precision", None) or spec.precision)
        s = _Settings(spec, bool(patches), bool(tags))
        try:
            st = Store.create(store_path, spec, wait=wait, **_manifest_extras(emb, s))
        except StoreExistsError:  # created by a concurrent run while we loaded the model
            st = Store.open(store_path, mode="a", wait=wait)
    try:
        return _run(st, disc, emb, t0=t0, model=model, layers=layers, aggregate=aggregate, excerpt_s=excerpt_s,
                    precision=precision, patches=patches, tags=tags, workers=workers, batch_size=batch_size,
                    retry_failed=retry_failed, progress=progress, commit_every=commit_every,
                    commit_seconds=commit_seconds, on_failure=on_failure, engine=engine)
    finally:
        st.close()


def _load(spec: VectorSpec, batch_size: int, st: Store | None = None) -> Any:
    """An embedder that makes exactly ``spec``'s vectors (refused, naming the store, when the installed
    weights differ from those the store was made with)."""
    try:
        return spec.embedder(batch_size=batch_size)
    except SpecMismatchError as exc:
        if st is None:
            raise
        raise StoreMismatchError(f"{st.path}: {exc}") from None


def _load_auto(spec: VectorSpec, batch_size: int) -> Any:
    """``--precision auto`` for a new store: the fastest precision that meets its fidelity bar here,
    recorded in the store's spec."""
    from .embedder import Embedder

    emb = Embedder.from_pretrained(spec.model, batch_size=batch_size, precision="auto")
    return spec.replace(precision=getattr(emb, "precision", "fp32")).bind(emb)


def _run(
    st: Store,
    disc: Discovery,
    emb: Any,
    *,
    t0: float,
    model: str | None,
    layers: Any,
    aggregate: str | None,
    excerpt_s: float | None,
    precision: str | None,
    patches: bool | None,
    tags: bool | None,
    workers: int,
    batch_size: int,
    retry_failed: bool,
    progress: bool,
    commit_every: int,
    commit_seconds: float,
    on_failure: Callable[[str, str], None] | None,
    engine: Callable[[Any], Any] | None = None,
) -> dict:
    s = _resolve_settings(st, model=model, emb=emb, layers=layers, aggregate=aggregate, excerpt_s=excerpt_s,
                          precision=precision, patches=patches, tags=tags)

    failures: list[dict] = [{"path": p, "error": f"{p}: {r}"} for p, r in disc.errors]

    def fail(path: str, error: str) -> None:
        failures.append({"path": path, "error": error})
        if on_failure is not None:
            on_failure(path, error)

    for p, r in disc.errors:
        if on_failure is not None:
            on_failure(p, f"{p}: {r}")

    # -- plan --
    index: dict[str, Item] = {}
    errors: dict[str, str] = {}
    for it in st.items():
        index[it.path] = it
        if it.status == "failed" and it.error:
            errors[it.path] = it.error
    plan = _plan(disc.files, index, retry_failed=retry_failed, errors=errors)
    counts = {"unchanged": plan.unchanged, "moved": 0, "copies": 0, "restored": 0, "touched": 0}

    if plan.restored:
        with st.transaction():
            for f, item_id in plan.restored:
                st.move(item_id, f.path, size=f.size, mtime=f.mtime)
        counts["restored"] = len(plan.restored)

    # -- hash new/changed files; recognise moves and copies --
    hashes = _hash_all(plan.to_hash, workers, progress)
    by_hash: dict[str, list[Item]] = {}
    for it in st.items():
        if it.row is not None and it.sha256 and it.status in ("ok", "missing"):
            by_hash.setdefault(it.sha256, []).append(it)
    found_paths = {f.path for f in disc.files}
    to_embed: list[tuple[FoundFile, str | None]] = []
    with st.transaction():
        for f, h in zip(plan.to_hash, hashes):
            if isinstance(h, BaseException):
                reason = getattr(h, "strerror", None) or str(h)
                msg = f"{f.path}: cannot read ({reason.lower() if reason else type(h).__name__})"
                st.add_failed(f.path, msg, size=f.size, mtime=f.mtime)
                fail(f.path, msg)
                continue
            same_path = [it for it in by_hash.get(h, []) if it.path == f.path]
            if same_path:  # same content, only size/mtime metadata changed (touched, copied back)
                st.move(same_path[0].id, f.path, size=f.size, mtime=f.mtime)
                counts["touched"] += 1
                continue
            cands = by_hash.get(h, [])
            gone = [it for it in cands if it.path not in found_paths and (it.status == "missing" or not os.path.exists(it.path))]
            if gone:
                src = gone[0]
                st.move(src.id, f.path, size=f.size, mtime=f.mtime)
                by_hash[h] = [it for it in cands if it.id != src.id] + [_with_path(src, f.path)]
                counts["moved"] += 1
            elif cands:
                st.add_alias(f.path, cands[0], size=f.size, mtime=f.mtime)
                counts["copies"] += 1
            else:
                to_embed.append((f, h))

    # -- embed --
    embedded = 0
    audio_s = decoded_s = 0.0
    interrupted = False
    if to_embed:
        if emb is None:
            emb = _load(s.spec, batch_size, st)
        audio_s, decoded_s, embedded, interrupted = _embed_loop(
            st, engine(emb) if engine is not None else emb, to_embed, s, workers=workers, progress=progress, commit_every=commit_every,
            commit_seconds=commit_seconds, fail=fail,
        )

    wall = time.perf_counter() - t0
    store_counts = st.counts()
    skipped = counts["unchanged"] + counts["restored"] + counts["moved"] + counts["copies"] + counts["touched"]
    return {
        "store": str(st.path),
        "model": st.manifest.get("model"),
        "settings_fingerprint": st.fingerprint,
        "layers": list(s.spec.selected_layers),
        "aggregation": s.spec.aggregation,
        "excerpt_s": s.spec.excerpt_s,
        "precision": s.spec.precision,
        "found": len(disc.files),
        "embedded": embedded,
        "skipped": skipped,
        "unchanged": counts["unchanged"] + counts["touched"],
        "moved": counts["moved"],
        "copies": counts["copies"],
        "restored": counts["restored"],
        "previously_failed": len(plan.failed_before),
        "failed": len(failures),
        "failures": failures,
        "ignored": disc.skipped_counts(),
        "audio_hours": audio_s / 3600.0,
        "decoded_hours": decoded_s / 3600.0,
        "wall_s": wall,
        "x_realtime": (audio_s / wall) if wall > 0 else 0.0,
        "interrupted": interrupted,
        "store_counts": {"embedded": store_counts["ok"], "failed": store_counts["failed"], "missing": store_counts["missing"]},
    }


def _with_path(it: Item, path: str) -> Item:
    from dataclasses import replace

    return replace(it, path=path, status="ok")


def _embed_loop(
    st: Store,
    emb: Any,
    to_embed: list[tuple[FoundFile, str | None]],
    s: _Settings,
    *,
    workers: int,
    progress: bool,
    commit_every: int,
    commit_seconds: float,
    fail: Callable[[str, str], None],
) -> tuple[float, float, int, bool]:
    """Embed ``to_embed`` and store each result; returns (file seconds, decoded seconds, n embedded, interrupted)."""
    bar = progress_bar(total=len(to_embed), desc="embedding", enabled=progress, leave=False, unit="file")
    t_start = time.perf_counter()
    audio_s, music_s, n_ok, since_commit, last_commit = 0.0, 0.0, 0, 0, time.perf_counter()
    gen = emb.embed_files(
        [f.path for f, _ in to_embed],
        layers=s.spec.embed_layers(),
        aggregate=s.spec.aggregation,
        excerpt_s=s.spec.excerpt_s,
        return_patches=s.patches,
        workers=workers,
    )
    interrupted = False
    st.begin()
    try:
        for (f, h), res in zip(to_embed, gen):
            if getattr(res, "vector", None) is None:
                error = getattr(res, "error", None) or f"{f.path}: failed"
                st.add_failed(f.path, error, size=f.size, mtime=f.mtime)
                fail(f.path, error)
                if progress:
                    bar.write(f"embedkit: {error}", file=sys.stderr)
            elif (bad := _non_finite(res, s)) is not None:
                error = f"{f.path}: {bad}; not stored"
                st.add_failed(f.path, error, size=f.size, mtime=f.mtime)
                fail(f.path, error)
                if progress:
                    bar.write(f"embedkit: {error}", file=sys.stderr)
            else:
                st.add_embedded(
                    f.path,
                    res.vector,
                    size=f.size,
                    mtime=f.mtime,
                    sha256=h,
                    duration_s=_file_duration(res),
                    samplerate=res.samplerate,
                    patch_vectors=res.patch_vectors if s.patches else None,
                    patch_start_s=res.patch_start_s if s.patches else None,
                    tags=res.tags if s.tags else None,
                    padded=getattr(res, "padded", None),
                )
                n_ok += 1
                audio_s += float(res.duration_s or 0.0)
                music_s += _file_duration(res)
            since_commit += 1
            now = time.perf_counter()
            if since_commit >= commit_every or now - last_commit >= commit_seconds:
                st.commit()
                st.begin()
                since_commit, last_commit = 0, now
            el = max(now - t_start, 1e-9)
            bar.set_postfix_str(f"{music_s / 3600:.2f} h audio, {music_s / el:.0f}× real time", refresh=False)
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        close = getattr(gen, "close", None)
        if close is not None:
            close()
        if st.in_transaction:
            st.commit()  # everything added so far is complete and valid: keep it
        bar.close()
        if interrupted:
            log.warning("interrupted: %d files embedded in this run are saved in %s; rerun to resume", n_ok, st.path)
    return music_s, audio_s, n_ok, interrupted


def _non_finite(res: Any, s: _Settings) -> str | None:
    """Why a result must not be stored (NaN/inf in its vector, tags or patch vectors), or None."""
    if not np.all(np.isfinite(res.vector)):
        return "the vector has NaN or infinite values (audio samples NaN or out of range?)"
    tags = getattr(res, "tags", None)
    if tags is not None and not np.all(np.isfinite(tags)):
        return "the network output has NaN or infinite values (audio samples NaN or out of range?)"
    if s.patches and res.patch_vectors is not None and not np.all(np.isfinite(res.patch_vectors)):
        return "a patch vector has NaN or infinite values (audio samples NaN or out of range?)"
    return None


def _file_duration(res: Any) -> float:
    """Seconds of the whole file: an excerpt's result knows its centred offset (file = 2·offset + excerpt)."""
    d = float(res.duration_s or 0.0)
    off = float(getattr(res, "offset_s", 0.0) or 0.0)
    return d + 2.0 * off if off > 0 else d


def format_summary(summary: dict) -> str:
    """Human-readable closing summary (several lines) of `embed_into_store`'s result."""
    s = summary
    parts = [f"{s['embedded']} embedded", f"{s['skipped']} skipped"]
    extra = [f"{s[k]} {k}" for k in ("unchanged", "moved", "copies", "restored") if s.get(k)]
    if extra and s["skipped"]:
        parts[-1] += " (" + ", ".join(extra) + ")"
    parts.append(f"{s['failed']} failed")
    if s.get("previously_failed"):
        parts.append(f"{s['previously_failed']} failed earlier, not retried (use --retry-failed)")
    lines = [f"{s['store']}: " + ", ".join(parts)]
    if s["embedded"]:
        lines.append(
            f"  {s['audio_hours']:.2f} h of audio in {_hms(s['wall_s'])} ({s['x_realtime']:.0f}× real time)"
        )
    else:
        lines.append(f"  done in {_hms(s['wall_s'])}")
    if s.get("ignored"):
        lines.append("  ignored: " + ", ".join(f"{n} {r}" for r, n in sorted(s["ignored"].items())))
    sc = s["store_counts"]
    lines.append(f"  store now holds {sc['embedded']} embedded, {sc['failed']} failed, {sc['missing']} missing")
    if s["failures"]:
        lines.append("failed:")
        lines += [f"  {f['error']}" for f in s["failures"][:50]]
        if len(s["failures"]) > 50:
            lines.append(f"  ... and {len(s['failures']) - 50} more (see --json or 'embedkit store info --failures')")
    return "\n".join(lines)


def _hms(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, sec = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def prune(store: Store, *, delete: bool = False, dry_run: bool = False) -> dict:
    """Mark items whose file no longer exists as "missing" (``delete``: remove them from the table).

    Failed items whose file vanished are always removed (they hold no vector). Returns
    ``{"missing": [paths], "deleted": [paths], "checked": n}``.
    """
    gone_ok, gone_failed, already_missing = [], [], []
    items = store.items()
    for it in items:
        if os.path.exists(it.path):
            continue
        if it.status == "failed":
            gone_failed.append(it.path)
        elif it.status == "missing":
            already_missing.append(it.path)
        else:
            gone_ok.append(it.path)
    out = {"checked": len(items), "missing": gone_ok, "deleted": [], "dry_run": dry_run}
    to_delete = gone_failed + ((gone_ok + already_missing) if delete else [])
    out["deleted"] = to_delete
    if not dry_run:
        with store.transaction():
            if not delete and gone_ok:
                store.mark_missing(gone_ok)
            if to_delete:
                store.delete(to_delete)
    return out


__all__ = ["embed_into_store", "format_summary", "prune"]
