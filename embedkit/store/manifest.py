"""``STORE/manifest.json``: the store's `VectorSpec` (embedkit 0.1's keys) plus what else the shards hold.

Keys: ``model``, ``fingerprint`` (model), ``dim``, ``layout``, ``model_blocks``, ``layers``, ``aggregation``,
``excerpt_s``, ``precision``, ``settings_fingerprint`` (= ``spec.fingerprint``), ``patch_dim``, ``n_tags``,
``tag_labels``, ``shard_rows``, ``sample_rate``, ``store_id`` (random, fixed at creation), ``embedkit_version``,
``created``, ``format_version``, ``kind`` (``"embedkit-store"``). A copy of the text is kept in items.sqlite (table ``sidecar``) so that
``embedkit store verify --repair`` can restore a damaged manifest.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from ..sidecar import SidecarError, check_doc, dumps, read_json
from ..spec import SpecError, VectorSpec
from .errors import StoreCorruptError, StoreError, verify_hint

MANIFEST = "manifest.json"
MANIFEST_KIND = "embedkit-store"
FORMAT_VERSION = 1
#: default rows per shard: 65,536 track vectors (160 MiB at dim 640) / 262,144 patch vectors.
DEFAULT_SHARD_ROWS = {"vec": 65_536, "patch": 262_144}


def settings_fingerprint(
    model_fingerprint: str, *, layers: Sequence[str] | None, aggregation: str, excerpt_s: float | None
) -> str:
    """sha256 hex of everything that decides a stored vector: model fingerprint + layers + aggregation + excerpt.

    The formula of embedkit 0.1; `VectorSpec.fingerprint` gives the same value for one fp32 model.
    """
    doc = {
        "model": model_fingerprint,
        "layers": list(layers) if layers is not None else None,
        "aggregation": aggregation,
        "excerpt_s": None if excerpt_s is None else float(excerpt_s),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def normalize_layout(layout: Any, dim: int) -> list[dict] | None:
    """A layout given as a FeatureLayout, ``[(name, size)]`` or ``[{"name","start","stop"}]`` → dict entries."""
    if layout is None:
        return None
    blocks = getattr(layout, "blocks", None)
    if blocks is not None:
        layout = [(b.name, b.size) for b in blocks]
    out: list[dict] = []
    start = 0
    for entry in layout:
        if isinstance(entry, dict):
            d = {**entry, "name": str(entry["name"]), "start": int(entry["start"]), "stop": int(entry["stop"])}
        else:
            name, size = entry
            d = {"name": str(name), "start": start, "stop": start + int(size)}
        out.append(d)
        start = d["stop"]
    return out


def new_manifest(manifest: dict | VectorSpec, where: Path, **extra: Any) -> tuple[dict, VectorSpec]:
    """The full manifest of a new store from a `VectorSpec` (+ ``extra`` keys) or a 0.1-style dict."""
    if isinstance(manifest, VectorSpec):
        spec, m = manifest, dict(extra)
    else:
        m = {**manifest, **extra}
        for key in ("model", "fingerprint", "dim"):
            if key not in m:
                raise StoreError(f"{where}: manifest lacks '{key}'")
        m["dim"] = int(m["dim"])
        m["layout"] = normalize_layout(m.get("layout"), m["dim"])
        if m["layout"] is None:
            m.pop("layout")
        try:
            spec = VectorSpec.from_json({k: v for k, v in m.items() if k != "settings_fingerprint"}, source=where)
        except SpecError as exc:
            raise StoreError(str(exc)) from None
    given_fp = m.get("settings_fingerprint")
    m.update(spec.manifest_fields())
    if m.get("fingerprint") is None:
        raise StoreError(f"{where}: the model fingerprint is unknown (is the model installed?)")
    if given_fp is not None and given_fp != m["settings_fingerprint"]:
        raise StoreError(f"{where}: settings_fingerprint {given_fp[:16]}… does not match the settings ({spec.describe()})")
    pdim = m.get("patch_dim")
    if pdim is True:
        pdim = spec.patch_dim
    if pdim and int(pdim) != spec.patch_dim:
        raise StoreError(f"{where}: patch_dim {pdim} does not match the layers kept ({spec.patch_dim} values per patch)")
    m["patch_dim"] = int(pdim) if pdim else None
    m["n_tags"] = int(m.get("n_tags") or 0)
    m.setdefault("tag_labels", None)
    m.setdefault("shard_rows", dict(DEFAULT_SHARD_ROWS))
    m.setdefault("store_id", uuid.uuid4().hex)
    m.setdefault("embedkit_version", __version__)
    m.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    m["format_version"] = FORMAT_VERSION
    m["kind"] = MANIFEST_KIND
    return m, spec


def manifest_text(m: dict) -> str:
    try:
        return dumps(m)
    except SidecarError as exc:
        raise StoreError(f"manifest: {exc}") from None


def read_manifest(store: Path) -> tuple[dict, VectorSpec]:
    """Read and validate ``STORE/manifest.json``; any problem is one `StoreError` line naming the file."""
    mpath = store / MANIFEST
    if not mpath.exists():
        if (store / "items.sqlite").is_file():
            raise StoreCorruptError(f"{mpath}: missing (the store's items.sqlite is there); {verify_hint(store)}")
        what = "no such folder" if not store.exists() else "not an embedkit store (no manifest.json)"
        raise StoreError(f"{store}: {what}")
    try:
        m = read_json(mpath, kind=MANIFEST_KIND, max_version=FORMAT_VERSION, what="store manifest",
                      repair=verify_hint(store))
    except SidecarError as exc:
        raise StoreCorruptError(str(exc)) from None
    return m, validate_manifest(m, mpath)


def parse_manifest_text(text: str, where: Path) -> tuple[dict, VectorSpec]:
    """Validate a manifest given as text (the copy kept in items.sqlite)."""
    try:
        m = check_doc(json.loads(text, parse_constant=_refuse), where, kind=MANIFEST_KIND, max_version=FORMAT_VERSION,
                      what="store manifest")
    except (ValueError, SidecarError) as exc:
        raise StoreCorruptError(f"{where}: {exc}") from None
    return m, validate_manifest(m, where)


def _refuse(name: str) -> Any:
    raise ValueError(f"non-standard JSON value {name}")


def validate_manifest(m: dict, mpath: Path) -> VectorSpec:
    """The manifest's `VectorSpec`, after checking every key's type and that the keys agree."""
    store = mpath.parent
    hint = verify_hint(store)

    def bad(msg: str) -> StoreCorruptError:
        return StoreCorruptError(f"{mpath}: {msg} (edited or damaged); {hint}")

    try:
        spec = VectorSpec.from_json(m, source=mpath)
    except SpecError as exc:
        raise StoreCorruptError(f"{exc}; {hint}") from None
    if not isinstance(m.get("fingerprint"), str):
        raise bad("'fingerprint' must be the model fingerprint string")
    sfp = m.get("settings_fingerprint")
    if not isinstance(sfp, str):
        raise bad("'settings_fingerprint' must be a string")
    if spec.model_fingerprint is not None and sfp != spec.fingerprint:
        raise bad(f"'settings_fingerprint' {sfp[:16]}… does not match the settings it lists ({spec.describe()})")
    pdim = m.get("patch_dim")
    if pdim is not None and (isinstance(pdim, bool) or not isinstance(pdim, int) or pdim <= 0):
        raise bad(f"'patch_dim' must be a positive integer or null, found {pdim!r:.40}")
    if pdim is not None and pdim != spec.patch_dim:
        raise bad(f"'patch_dim' says {pdim} but the layers kept give {spec.patch_dim}")
    nt = m.get("n_tags") or 0
    if isinstance(nt, bool) or not isinstance(nt, int) or nt < 0:
        raise bad(f"'n_tags' must be a non-negative integer, found {nt!r:.40}")
    labels = m.get("tag_labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) != nt or not all(isinstance(x, str) for x in labels)):
        raise bad(f"'tag_labels' must list {nt} names")
    rows = m.get("shard_rows", DEFAULT_SHARD_ROWS)
    if (not isinstance(rows, dict) or any(k not in rows for k in ("vec", "patch"))
            or any(isinstance(rows[k], bool) or not isinstance(rows[k], int) or rows[k] <= 0 for k in ("vec", "patch"))):
        raise bad("'shard_rows' must be {\"vec\": n, \"patch\": n} with positive integers")
    sid = m.get("store_id")
    if sid is not None and (not isinstance(sid, str) or not sid):
        raise bad(f"'store_id' must be a non-empty string, found {sid!r:.40}")
    ex = m.get("excerpt_s")
    if ex is not None and not (isinstance(ex, (int, float)) and math.isfinite(ex) and ex > 0):
        raise bad(f"'excerpt_s' must be a positive number of seconds or null, found {ex!r:.40}")
    return spec


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


__all__ = ["DEFAULT_SHARD_ROWS", "FORMAT_VERSION", "MANIFEST", "new_manifest", "read_manifest", "settings_fingerprint"]
