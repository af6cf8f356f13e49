"""Structured filter pruning of a pretrained network into a narrower copy (Li et al. 2017).

"Pruning Filters for Efficient ConvNets" (Li, Kadav, Durdanovic, Samet & Graf, ICLR 2017): in every conv
block keep the filters whose kernels have the largest L1 norm, drop the others together with the matching
input channels of the next conv, the batch-norm entries and the rows of the dense layer that read them.
The student is the same topology with fewer filters per block, initialised with the kept weights; it is
then trained (distilled) to recover. Supported: the musicnn VGG (``vgg``, option ``n_filters``), so
``msd_vgg`` / ``mtt_vgg`` can be pruned. Compute falls about with (kept fraction)²: the 128→128 convs
dominate, above all conv2 (≈ 74 % of the multiply-adds). The fraction may differ per block
(``[0.375, 0.25, 1, 1, 1]``: narrow early blocks, where the cost is, and the teacher's deep blocks whole).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import EmbedkitError

#: architecture → (builder option that sets the filters per block, its default, number of conv blocks)
PRUNABLE = {"vgg": ("n_filters", 128, 5)}
CRITERION = "largest L1 norm of each conv filter (Li et al. 2017)"


def pruned_options(arch: str, fraction: float | Sequence[float]) -> dict[str, int | list[int]]:
    """Builder options of ``arch`` keeping ``fraction`` (0 < f ≤ 1) of every block's filters, or one
    fraction per block (a sequence as long as the network has conv blocks)."""
    if arch not in PRUNABLE:
        raise EmbedkitError(f"--prune works on {', '.join(PRUNABLE)} networks, not {arch!r}")
    fractions = [fraction] if isinstance(fraction, (int, float)) else list(fraction)
    if not fractions or not all(0.0 < f <= 1.0 for f in fractions):
        raise EmbedkitError(f"--prune {fraction}: give the fraction of filters to keep, in (0, 1], once or per block")
    option, full, n_blocks = PRUNABLE[arch]
    if len(fractions) not in (1, n_blocks):
        raise EmbedkitError(f"--prune: give one fraction or {n_blocks} (one per conv block of {arch}), not {len(fractions)}")
    counts = [max(1, int(round(full * f))) for f in fractions]
    return {option: counts[0] if len(counts) == 1 else counts}


def l1_keep(kernel: np.ndarray, n_keep: int, in_keep: np.ndarray | None) -> np.ndarray:
    """Indices (sorted) of the ``n_keep`` output filters of ``kernel`` ``(kh, kw, c_in, c_out)`` with the
    largest L1 norm, counting only the input channels ``in_keep`` (those that survive the previous prune)."""
    k = kernel if in_keep is None else kernel[:, :, in_keep, :]
    norms = np.abs(k).sum(axis=(0, 1, 2))
    return np.sort(np.argsort(-norms, kind="stable")[:n_keep])


def prune_vgg_weights(src, dst) -> dict[str, list[int]]:
    """Copy the kept filters of the full VGG ``src`` into the narrower VGG ``dst`` (both built by
    `embedkit.backbones.vgg.build_vgg`); returns the kept filter indices per conv layer."""
    dst.get_layer("bn_input").set_weights(src.get_layer("bn_input").get_weights())
    prev: np.ndarray | None = None
    kept: dict[str, list[int]] = {}
    k = 1
    while True:
        try:
            conv = src.get_layer(f"conv{k}")
        except ValueError:
            break
        w, b = conv.get_weights()
        keep = l1_keep(w, int(dst.get_layer(f"conv{k}").kernel.shape[-1]), prev)
        w = w if prev is None else w[:, :, prev, :]
        dst.get_layer(f"conv{k}").set_weights([w[..., keep], b[keep]])
        dst.get_layer(f"bn{k}").set_weights([v[keep] for v in src.get_layer(f"bn{k}").get_weights()])
        kept[f"conv{k}"] = keep.tolist()
        prev = keep
        k += 1
    # logits read the flattened (time, freq, channel) map of the last pool: keep the rows of kept channels
    w, b = src.get_layer("logits").get_weights()
    full = src.get_layer(f"pool{k - 1}").output.shape[-1]
    positions = w.shape[0] // full
    rows = np.concatenate([p * full + prev for p in range(positions)])
    if dst.get_layer("logits").kernel.shape[-1] == w.shape[1]:
        dst.get_layer("logits").set_weights([w[rows], b])
    return kept


def init_pruned(backbone, init: str) -> dict[str, Any]:
    """Initialise the narrower ``backbone`` from pretrained model ``init`` by L1-norm filter pruning.

    Returns the card record ``{"from", "criterion", "n_filters", "of", "fraction", "kept"}``: ``n_filters``
    one count (every block) or one per block; ``fraction`` the share of all conv filters kept.
    """
    from .. import backbones, pretrained

    card = pretrained.card(init)
    arch = card["architecture"]
    if arch not in PRUNABLE:
        raise EmbedkitError(f"--prune works on {', '.join(PRUNABLE)} networks; {init} is a {arch}")
    src = backbones.build(arch, **(card.get("arch_config") or {}))
    src.load_weights(str(pretrained.weights_path(init)))
    kept = prune_vgg_weights(src, backbone)
    option = PRUNABLE[arch][0]
    full = int(src.get_layer("conv1").kernel.shape[-1])
    counts = [len(v) for v in kept.values()]
    n: int | list[int] = counts[0] if len(set(counts)) == 1 else counts
    return {"from": init, "criterion": CRITERION, option: n, "of": full, "fraction": sum(counts) / (full * len(counts)),
            "kept": kept}
