"""Which columns of a track vector belong to which network block (for layer selection)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..features import parse_layer_list
from .base import HeadError

@dataclass(frozen=True)
class InputLayout:
    """Column slices of a vector: ``entries`` = ``((name, block, start, stop), ...)``.

    ``block`` groups entries of one network block (``pool5`` and its ``pool5_std`` part under
    ``mean+std`` aggregation), so selecting ``pool5`` keeps both.
    """

    entries: tuple[tuple[str, str, int, int], ...]

    @classmethod
    def from_manifest(cls, layout: Sequence[dict] | None, dim: int) -> InputLayout:
        if not layout:
            return cls((("all", "all", 0, int(dim)),))
        out = []
        for e in layout:
            name = str(e["name"])
            block = str(e.get("block") or (name[: -len("_std")] if name.endswith("_std") else name))
            out.append((name, block, int(e["start"]), int(e["stop"])))
        lay = cls(tuple(out))
        if lay.dim != dim:
            raise HeadError(f"feature layout covers {lay.dim} columns but vectors have {dim}")
        return lay

    @property
    def dim(self) -> int:
        return max(stop for *_, stop in self.entries) if self.entries else 0

    @property
    def blocks(self) -> list[str]:
        return list(dict.fromkeys(b for _, b, _, _ in self.entries))

    def parse(self, layers: str | Iterable[str | int] | None) -> tuple[str, ...]:
        """Block names (model order) from ``"1,2,pool5"``, ``["pool4"]``, ``"all"`` or None (= all)."""
        try:
            return parse_layer_list(layers, self.blocks)
        except ValueError as exc:
            raise HeadError(str(exc)) from None

    def columns(self, blocks: Sequence[str]) -> np.ndarray:
        """Column indices (ascending layout order) of the entries of ``blocks``."""
        want = set(blocks)
        missing = want - set(self.blocks)
        if missing:
            raise HeadError(f"layers {', '.join(sorted(missing))} are not in these vectors (blocks: {', '.join(self.blocks)})")
        parts = [np.arange(a, b) for _, blk, a, b in self.entries if blk in want]
        return np.concatenate(parts).astype(np.int64)

    def to_json(self) -> list[dict]:
        return [{"name": n, "block": b, "start": a, "stop": s} for n, b, a, s in self.entries]


def parse_layers_grid(spec: str | None, layout: InputLayout) -> list[tuple[str, ...]] | None:
    """Layer subsets to search: ``"default"`` (all, each block alone, the last two, the last three)
    or ``"1,2,3,4,5|4,5|5"`` (``|`` or ``;`` between subsets). None → no search."""
    if spec is None or not str(spec).strip():
        return None
    blocks = layout.blocks
    if str(spec).strip().lower() == "default":
        cands = [tuple(blocks)] + [(b,) for b in blocks]
        if len(blocks) >= 3:
            cands += [tuple(blocks[-2:]), tuple(blocks[-3:])]
    else:
        cands = [layout.parse(part) for part in str(spec).replace(";", "|").split("|") if part.strip()]
    return list(dict.fromkeys(cands))
