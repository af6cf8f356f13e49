"""Multi-layer feature layout, layer selection and per-track aggregation (pure numpy).

A model's per-patch feature is the concatenation of its blocks' pooled activations, in card order
(msd_vgg: pool1..pool5, 5 × 128 = 640 values: ``[0:128]`` is pool1, ..., ``[512:640]`` is pool5).
A track vector aggregates the patch features: ``mean`` (D values) or ``mean+std`` (2·D values: all means,
then all standard deviations, each in block order).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

AGGREGATIONS = ("mean", "mean+std")


@dataclass(frozen=True)
class Block:
    name: str
    size: int


@dataclass(frozen=True)
class FeatureLayout:
    """Ordered feature blocks of one model, e.g. ``pool1..pool5`` × 128."""

    blocks: tuple[Block, ...]

    @classmethod
    def from_card(cls, card: dict) -> "FeatureLayout":
        return cls(tuple(Block(b["name"], int(b["size"])) for b in card["feature_blocks"]))

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.blocks]

    @property
    def dim(self) -> int:
        return sum(b.size for b in self.blocks)

    def slices(self) -> dict[str, slice]:
        """``{block name: slice into the full per-patch feature}``."""
        out, start = {}, 0
        for b in self.blocks:
            out[b.name] = slice(start, start + b.size)
            start += b.size
        return out

    def parse_layers(self, layers: str | Iterable[str | int] | None) -> list[str]:
        """Block names from ``"1,2,pool5"``, ``[1, 2]``, ``["pool4"]`` or None (= all). 1-based numbers."""
        return list(parse_layer_list(layers, self.names))

    def subset(self, layers: str | Iterable[str | int] | None) -> "FeatureLayout":
        keep = set(self.parse_layers(layers))
        return FeatureLayout(tuple(b for b in self.blocks if b.name in keep))

    def select(self, features: np.ndarray, layers: str | Iterable[str | int] | None) -> np.ndarray:
        """Columns of ``features`` ``(..., self.dim)`` for the chosen blocks → ``(..., sub.dim)``."""
        names = self.parse_layers(layers)
        if features.shape[-1] != self.dim:
            raise ValueError(f"features have {features.shape[-1]} columns, layout expects {self.dim}")
        if names == self.names:
            return features
        sl = self.slices()
        return np.concatenate([features[..., sl[n]] for n in names], axis=-1)

    def to_json(self, *, aggregation: str = "mean") -> list[dict]:
        """Manifest form: ``[{"name", "start", "stop", "stat"}]`` for the aggregated vector."""
        stats = ["mean"] if aggregation == "mean" else ["mean", "std"]
        out, start = [], 0
        for stat in stats:
            for b in self.blocks:
                out.append({"name": b.name if stat == "mean" else f"{b.name}_std", "block": b.name, "stat": stat,
                            "start": start, "stop": start + b.size})
                start += b.size
        return out


def parse_layer_list(layers: str | Iterable[str | int] | None, blocks: Sequence[str]) -> tuple[str, ...]:
    """Chosen block names, in ``blocks`` order, from ``"1,2,pool5"``, ``[1, "pool4"]``, ``"all"`` or None (= all).

    Numbers are 1-based positions in ``blocks``; names are case-insensitive. Raises ValueError naming the
    offending token.
    """
    if layers is None or (isinstance(layers, str) and layers.strip().lower() in ("", "all")):
        return tuple(blocks)
    items = layers.split(",") if isinstance(layers, str) else list(layers)
    lower = {b.lower(): b for b in blocks}
    chosen: set[str] = set()
    for item in items:
        token = str(item).strip()
        if not token:
            continue
        if token.isdigit():
            k = int(token)
            if not 1 <= k <= len(blocks):
                raise ValueError(f"layer number {k} out of range 1..{len(blocks)} (blocks: {', '.join(blocks)})")
            token = blocks[k - 1]
        if token.lower() not in lower:
            raise ValueError(f"unknown layer {token!r}; blocks are {', '.join(blocks)}")
        chosen.add(lower[token.lower()])
    if not chosen:
        raise ValueError(f"no layers selected from {layers!r}")
    return tuple(b for b in blocks if b in chosen)


def aggregate(patch_features: np.ndarray, mode: str = "mean") -> np.ndarray:
    """``(n_patches, D)`` → ``(D,)`` (mean) or ``(2·D,)`` (mean then std), float32."""
    if mode not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {mode!r}; expected one of {AGGREGATIONS}")
    x = np.asarray(patch_features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"expected (n_patches, D) with n_patches >= 1, given shape={x.shape}")
    mean = x.mean(axis=0)
    if mode == "mean":
        return mean.astype(np.float32)
    return np.concatenate([mean, x.std(axis=0)]).astype(np.float32)


def aggregated_dim(layout: FeatureLayout, layers: Sequence[str] | str | None, mode: str) -> int:
    return layout.subset(layers).dim * (2 if mode == "mean+std" else 1)
