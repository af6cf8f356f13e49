"""Multi-model vectors (issue 16): names, feature layout and tag labels of several models side by side.

``"msd_vgg+msd_musicnn"`` runs both networks on the same log-mel patches and concatenates their per-patch
features in that order. Blocks are qualified with their model (``"msd_vgg:pool1"`` … ``"msd_musicnn:penultimate"``,
`embedkit.spec.qualify`), tags too (``"msd_musicnn:rock"``). Layer lists may name a block without its model
where the name is unique across the models (``"penultimate"``); ``"pool5"`` is ambiguous between the two VGGs.
Pure Python/numpy; no TensorFlow.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import EmbedkitError
from .features import Block, FeatureLayout, parse_layer_list
from .spec import MODEL_JOIN, QUALIFIER, qualify


def split(name: str | Sequence[str]) -> tuple[str, ...]:
    """``"msd_vgg+MSD-musicnn"`` (or a list) → ``("msd_vgg", "msd_musicnn")``: normalised, known, no repeats."""
    from . import pretrained

    raw = name.split(MODEL_JOIN) if isinstance(name, str) else list(name)
    if not raw or any(not str(n).strip() for n in raw):
        raise EmbedkitError(f"invalid model name {name!r}; join several models with '+', e.g. msd_vgg+msd_musicnn")
    names = tuple(pretrained.check_name(str(n)) for n in raw)
    if len(set(names)) != len(names):
        raise EmbedkitError(f"model listed twice in {name!r}; each model may appear once")
    return names


def join(names: Iterable[str]) -> str:
    """``("msd_vgg", "msd_musicnn")`` → ``"msd_vgg+msd_musicnn"``."""
    return MODEL_JOIN.join(names)


@dataclass(frozen=True)
class CombinedLayout(FeatureLayout):
    """A `FeatureLayout` of qualified blocks whose layer lists may also use unique unqualified names."""

    def parse_layers(self, layers: str | Iterable[str | int] | None) -> list[str]:
        if layers is None or (isinstance(layers, str) and layers.strip().lower() in ("", "all")):
            return self.names
        tokens = layers.split(",") if isinstance(layers, str) else [str(x) for x in layers]
        short: dict[str, list[str]] = {}
        for n in self.names:
            short.setdefault(n.split(QUALIFIER, 1)[1].lower(), []).append(n)
        items = []
        for t in (t.strip() for t in tokens):
            if t and QUALIFIER not in t and not t.isdigit() and t.lower() in short:
                if len(short[t.lower()]) > 1:
                    raise ValueError(f"layer {t!r} is ambiguous; use one of {', '.join(short[t.lower()])}")
                t = short[t.lower()][0]
            items.append(t)
        return list(parse_layer_list(items, self.names))

    def subset(self, layers: str | Iterable[str | int] | None) -> "CombinedLayout":
        keep = set(self.parse_layers(layers))
        return CombinedLayout(tuple(b for b in self.blocks if b.name in keep))


def combined_layout(parts: Sequence[tuple[str, FeatureLayout]]) -> CombinedLayout:
    """Concatenated per-patch layout of several ``(model, layout)``, blocks named ``model:block``."""
    return CombinedLayout(tuple(Block(qualify(m, b.name), b.size) for m, lay in parts for b in lay.blocks))


def combined_labels(parts: Sequence[tuple[str, list[str]]]) -> list[str]:
    """Tag labels of several models, ``model:tag``, in model order (the tag vector is concatenated likewise)."""
    return [qualify(m, t) for m, labels in parts for t in labels]


def combined_card(cards: Sequence[dict], layout: FeatureLayout, labels: list[str]) -> dict:
    """A card-like summary of several models (name, members, feature blocks, labels) for reports."""
    return {
        "name": join(c["name"] for c in cards),
        "models": [c["name"] for c in cards],
        "architecture": join(c["architecture"] for c in cards),
        "labels": labels,
        "feature_blocks": [{"name": b.name, "size": b.size} for b in layout.blocks],
        "members": list(cards),
    }
