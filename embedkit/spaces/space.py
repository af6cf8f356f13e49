"""`Space`: a similarity space over store vectors, plain numpy arrays + a JSON card, no pickle.

A space maps vectors ``(n, in_dim)`` to unit vectors ``(n, out_dim)``; similarity in the space is the
inner product (cosine) of the mapped vectors. One form covers every kind::

    u = x / |x|                                  # raw cosine direction (always)
    s = (u - mean) / scale                       # centring / standardisation ((in_dim,) each)
    y = s @ W  [+ relu(s @ W1 + b1) @ W2]        # linear projection (PCA, whitening, learned) and MLP branch
    y = y * mask[c]                              # optional: condition c of a conditioned space (Lee et al. 2020)
    z = y / |y|

``kind`` names what was fitted: ``raw``, ``center``, ``standardize``, ``pca``, ``whiten`` (zero-label,
`embedkit.spaces.zero_label`) or ``linear``, ``mlp`` (learned, `embedkit.spaces.train`).

On disk a space is ``NAME.npz`` (the arrays) + ``NAME.json`` (the card: kind, dims, the vector spec of
the vectors it was fitted on, training record, sha256 of every array). Loading checks the card's
format and every checksum; applying a space to vectors of another spec is refused with one line.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import EmbedkitError, ModelMismatchError

KIND = "embedkit.space"
FORMAT = 1
SPACE_DIR = "spaces"
ZERO_LABEL_KINDS = ("raw", "center", "standardize", "pca", "whiten")
LEARNED_KINDS = ("linear", "mlp")
KINDS = ZERO_LABEL_KINDS + LEARNED_KINDS
ARRAY_NAMES = ("mean", "scale", "W", "W1", "b1", "W2", "masks")


class SpaceError(EmbedkitError):
    """A space is missing, unreadable, corrupt, or cannot be fitted from the given data."""


class SpaceMismatchError(SpaceError, ModelMismatchError):
    """A space fitted on vectors of one spec was applied to vectors of another."""


@dataclass
class Space:
    """A fitted similarity space; ``transform(X) -> X'`` is plain numpy (see the module doc).

    ``arrays``: ``mean``/``scale`` ``(in_dim,)``, optional ``W`` ``(in_dim, m)``, ``W1`` ``(in_dim, h)``,
    ``b1`` ``(h,)``, ``W2`` ``(h, m)``, ``masks`` ``(n_conditions, out_dim)``. ``spec``: the vector spec
    (JSON dict) of the vectors the space was fitted on; ``info``: how it was fitted and measured.
    """

    kind: str
    in_dim: int
    arrays: dict[str, np.ndarray]
    spec: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    conditions: list[str] = field(default_factory=list)
    name: str | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SpaceError(f"unknown space kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        a = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.arrays.items() if v is not None}
        d = int(self.in_dim)
        a.setdefault("mean", np.zeros(d, np.float32))
        a.setdefault("scale", np.ones(d, np.float32))
        for key in ("mean", "scale"):
            if a[key].shape != (d,):
                raise SpaceError(f"space array {key!r} has shape {a[key].shape}, expected ({d},)")
        if ("W1" in a) != ("W2" in a) or ("W1" in a) != ("b1" in a):
            raise SpaceError("an MLP space needs W1, b1 and W2 together")
        if "W" in a and a["W"].shape[0] != d:
            raise SpaceError(f"space array 'W' has shape {a['W'].shape}, expected ({d}, m)")
        if "W1" in a and (a["W1"].shape[0] != d or a["W2"].shape[0] != a["W1"].shape[1] or a["b1"].shape != (a["W1"].shape[1],)):
            raise SpaceError(f"MLP arrays disagree: W1 {a['W1'].shape}, b1 {a['b1'].shape}, W2 {a['W2'].shape}")
        if "W" in a and "W2" in a and a["W"].shape[1] != a["W2"].shape[1]:
            raise SpaceError(f"W {a['W'].shape} and W2 {a['W2'].shape} map to different widths")
        if "masks" in a and (a["masks"].ndim != 2 or a["masks"].shape[1] != self.out_dim or
                             (self.conditions and a["masks"].shape[0] != len(self.conditions))):
            raise SpaceError(f"masks of shape {a['masks'].shape} do not fit out_dim {self.out_dim} / "
                             f"{len(self.conditions)} conditions")
        self.arrays = a
        self.in_dim = d

    # ---- shape --------------------------------------------------------------------------------

    @property
    def out_dim(self) -> int:
        a = self.arrays
        if "W" in a:
            return int(a["W"].shape[1])
        if "W2" in a:
            return int(a["W2"].shape[1])
        return self.in_dim

    @property
    def fingerprint(self) -> str:
        """sha256 over kind, dims and every array's bytes (identifies the mapping itself)."""
        h = hashlib.sha256(f"{self.kind}|{self.in_dim}|{self.out_dim}|{','.join(self.conditions)}".encode())
        for k in ARRAY_NAMES:
            if k in self.arrays:
                h.update(k.encode())
                h.update(self.arrays[k].astype("<f4").tobytes())
        return h.hexdigest()

    # ---- the mapping --------------------------------------------------------------------------

    def transform(self, X: np.ndarray, *, condition: str | int | None = None, batch: int = 65_536) -> np.ndarray:
        """``(n, in_dim)`` (or ``(in_dim,)``) → ``(n, out_dim) float32`` unit vectors; cosine = inner product.

        ``condition``: name or number of a subspace of a conditioned space (default: the whole space).
        """
        x = np.asarray(X, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise SpaceMismatchError(f"{self._where()}: vectors of shape {np.asarray(X).shape} do not fit this space "
                                     f"(expects (n, {self.in_dim}))")
        mask = self._mask(condition)
        out = np.empty((x.shape[0], self.out_dim), np.float32)
        for i in range(0, x.shape[0], batch):
            out[i : i + batch] = self._forward(x[i : i + batch], mask)
        return out

    __call__ = transform

    def _forward(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        a = self.arrays
        u = _unit(x)
        s = (u - a["mean"]) / a["scale"]
        y = s @ a["W"] if "W" in a else (s if "W2" not in a else 0.0)
        if "W2" in a:
            y = y + np.maximum(s @ a["W1"] + a["b1"], 0.0) @ a["W2"]
        if mask is not None:
            y = y * mask
        return _unit(np.asarray(y, np.float32))

    def _mask(self, condition: str | int | None) -> np.ndarray | None:
        if condition is None or "masks" not in self.arrays:
            if condition is not None:
                raise SpaceError(f"{self._where()}: space has no conditions; drop the condition {condition!r}")
            return None
        if isinstance(condition, str) and not condition.isdigit():
            if condition not in self.conditions:
                raise SpaceError(f"{self._where()}: unknown condition {condition!r}; the space has "
                                 f"{', '.join(self.conditions) or 'none'}")
            c = self.conditions.index(condition)
        else:
            c = int(condition)
            if not 0 <= c < self.arrays["masks"].shape[0]:
                raise SpaceError(f"{self._where()}: condition {c} out of range 0..{self.arrays['masks'].shape[0] - 1}")
        return self.arrays["masks"][c]

    # ---- compatibility ------------------------------------------------------------------------

    def check_spec(self, spec: Mapping | Any, *, dim: int | None = None, what: str = "the vectors") -> None:
        """Refuse (`SpaceMismatchError`, one line) vectors whose spec or dim differs from the space's."""
        from ..spec import SpecMismatchError
        from .specs import check

        try:
            check(self.spec, spec, what=f"space {self._where()}", other_what=what,
                  hint="fit a space on these vectors with 'embedkit metric fit' (or 'metric baseline')")
        except SpecMismatchError as exc:
            raise SpaceMismatchError(str(exc)) from None
        if dim is not None and int(dim) != self.in_dim:
            raise SpaceMismatchError(f"{self._where()}: space expects vectors of dim {self.in_dim}, {what} have dim {dim}")

    def check_store(self, store: Any, *, source: str = "tracks") -> None:
        """`check_spec` against an open `Store`'s spec (track or patch vectors)."""
        from .specs import store_spec

        dim = store.dim if source == "tracks" else int(store.manifest.get("patch_dim") or 0)
        self.check_spec(store_spec(store), dim=dim, what=f"the {source} of store {store.path}")

    # ---- persistence --------------------------------------------------------------------------

    def card(self) -> dict:
        """The JSON card (without ``created``/``name``): what, dims, spec, training record, checksums."""
        return {
            "kind": KIND,
            "format": FORMAT,
            "space_kind": self.kind,
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "conditions": list(self.conditions),
            "spec": self.spec,
            "info": self.info,
            "fingerprint": self.fingerprint,
            "arrays_sha256": {k: _sha(v) for k, v in sorted(self.arrays.items())},
            "embedkit_version": __version__,
        }

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {prefix + k: v for k, v in self.arrays.items()}

    @classmethod
    def from_card(cls, card: Mapping, arrays: Mapping[str, np.ndarray], *, prefix: str = "", where: str = "space") -> Space:
        """Rebuild from a card and its arrays (checks format, kind and every checksum)."""
        if card.get("kind") != KIND:
            raise SpaceError(f"{where}: not an embedkit space card (kind {card.get('kind')!r})")
        if int(card.get("format", 0)) > FORMAT:
            raise SpaceError(f"{where}: space format {card.get('format')} is newer than this embedkit ({FORMAT}); upgrade embedkit")
        want = card.get("arrays_sha256") or {}
        got = {k[len(prefix):]: np.asarray(v) for k, v in arrays.items() if k.startswith(prefix) and k[len(prefix):] in ARRAY_NAMES}
        if set(want) != set(got):
            raise SpaceError(f"{where}: arrays {sorted(got)} do not match the card's {sorted(want)}; the space files are "
                             f"incomplete: refit it")
        for k, v in got.items():
            if _sha(v) != want[k]:
                raise SpaceError(f"{where}: array {k!r} fails its sha256 check (file changed or corrupt); refit the space")
        sp = cls(card["space_kind"], int(card["in_dim"]), got, dict(card.get("spec") or {}), dict(card.get("info") or {}),
                 list(card.get("conditions") or []))
        if sp.out_dim != int(card.get("out_dim", sp.out_dim)):
            raise SpaceError(f"{where}: card says out_dim {card.get('out_dim')}, arrays give {sp.out_dim}")
        return sp

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``PATH.npz`` then (last, as commit marker) ``PATH.json`` atomically; returns the card path."""
        base = _base(Path(path))
        base.parent.mkdir(parents=True, exist_ok=True)
        card = self.card()
        card.update({"name": base.name, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        from ..sidecar import SidecarError, atomic_write

        try:
            atomic_write(base.with_name(base.name + ".npz"), lambda f: np.savez(f, **self.arrays))
        except SidecarError as exc:
            raise SpaceError(str(exc)) from None
        _write_json(base.with_name(base.name + ".json"), card)
        self.name, self.path = base.name, base.with_name(base.name + ".json")
        return self.path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Space:
        """Read a space saved by `save` (``PATH``, ``PATH.json`` or ``PATH.npz``); checks format and checksums."""
        base = _base(Path(path))
        cpath, apath = base.with_name(base.name + ".json"), base.with_name(base.name + ".npz")
        if not cpath.exists():
            raise SpaceError(f"{cpath}: no such space (fit one with 'embedkit metric fit' or 'embedkit metric baseline')")
        from ..sidecar import SidecarError, read_json

        try:
            card = read_json(cpath, kind=KIND, max_version=FORMAT, what="space card", repair="refit the space")
        except SidecarError as exc:
            raise SpaceError(str(exc)) from None
        try:
            with np.load(apath, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # noqa: BLE001 - any unreadable npz is one message
            raise SpaceError(f"{apath}: unreadable space arrays ({type(exc).__name__}: {exc}); refit the space") from None
        sp = cls.from_card(card, arrays, where=str(cpath))
        sp.name, sp.path = base.name, cpath
        return sp

    def describe(self) -> dict:
        """Short summary for index cards and ``--json`` output."""
        return {"name": self.name, "kind": self.kind, "in_dim": self.in_dim, "out_dim": self.out_dim,
                "fingerprint": self.fingerprint, "conditions": list(self.conditions)}

    def _where(self) -> str:
        return str(self.path) if self.path else f"space {self.name or self.kind!r}"


# ---- store binding -----------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def space_dir(store: Any) -> Path:
    """``STORE/spaces`` for a `Store` or a store path."""
    return Path(getattr(store, "path", store)) / SPACE_DIR


def space_path(store: Any, name: str) -> Path:
    """Where space ``name`` lives: ``STORE/spaces/NAME`` for a plain name, else ``name`` as a path."""
    if _NAME.fullmatch(name or "") and not name.endswith((".json", ".npz")):
        return space_dir(store) / name
    return _base(Path(name))


def save_space(store: Any, space: Space, name: str) -> Path:
    """Save ``space`` as ``name`` beside ``store`` (or at the path ``name``); returns the card path."""
    if not name:
        raise SpaceError("a space needs a name (letters, digits, '_', '.', '-') or a path")
    return space.save(space_path(store, name))


def load_space(store: Any, name: str, *, source: str = "tracks", check: bool = True) -> Space:
    """Load space ``name`` of ``store`` (name beside the store, or a path) and, with ``check``, refuse it
    (`SpaceMismatchError`, one line) when it was fitted on vectors of another spec."""
    sp = Space.load(space_path(store, name))
    if check and hasattr(store, "manifest"):
        sp.check_store(store, source=source)
    return sp


def list_spaces(store: Any) -> list[dict]:
    """Cards of the spaces saved beside ``store`` (unreadable ones carry an ``error``)."""
    d = space_dir(store)
    out = []
    for p in sorted(d.glob("*.json")) if d.exists() else []:
        try:
            card = json.loads(p.read_text(encoding="utf-8"))
            card.setdefault("name", p.stem)
        except (OSError, ValueError) as exc:
            card = {"name": p.stem, "error": f"unreadable card ({exc})"}
        out.append(card)
    return out


# ---- helpers ------------------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32, copy=False)


def _sha(a: np.ndarray) -> str:
    from ..sidecar import sha256_array

    return sha256_array(np.ascontiguousarray(a, dtype="<f4"))


def _base(p: Path) -> Path:
    return p.with_suffix("") if p.suffix in (".json", ".npz") else p


def _write_json(path: Path, obj: dict) -> None:
    from ..sidecar import write_json

    write_json(path, obj)
