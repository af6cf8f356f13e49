"""Music highlights: the most representative ``length_s`` seconds of a track, by one of four methods.

Every method turns a track into a *curve*, one score per 3-s model patch (``(T,) float64`` on the patch
grid ``start_s``), and the highlight is the window of ``ceil(length_s / hop)`` consecutive patches with
the largest sum of scores (a moving-window sum):

- ``attention`` — Huang, Chou & Yang (2018): a trained attention head's weight of each patch times
  the patch's activation of the target class (the track's predicted class, or one you name): where
  the head both looks and hears its class.
- ``tags`` — the teacher's tag activity: per-patch probabilities of the track's top-5 MSD tags, summed.
- ``loudness`` — mean energy of each patch's samples (the loudest window; baseline, no network).
- ``repetition`` — how repeated each patch is: the mean of its three largest cosine similarities to
  patch vectors at least two patches away (the window whose material recurs most; baseline).

A track no longer than ``length_s`` is returned whole. `Highlighter.thumbnail` cuts the segment out of
the file (mono, the file's own sample rate) with short half-cosine fades and writes ogg / flac / wav;
`plot_curve` draws the curve and the chosen window as a PNG.

    from embedkit.highlight import Highlighter
    hl = Highlighter(method="attention", head="mood.head", length_s=30)
    h = hl.highlight_file("song.ogg")          # Highlight(start_s, end_s, curve, ...)
    hl.thumbnail(h, "song.highlight.ogg"); plot_curve(h, "song.highlight.png")
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EmbedkitError

METHODS = ("attention", "tags", "loudness", "repetition")
SR = 16000
PATCH_SAMPLES = 187 * 256
#: seconds between consecutive patch starts (one patch, ≈ 2.99 s)
HOP_S = PATCH_SAMPLES / SR
TOP_TAGS = 5
AUDIO_FORMATS = {"ogg": ("OGG", "VORBIS"), "flac": ("FLAC", "PCM_16"), "wav": ("WAV", "PCM_16")}


class HighlightError(EmbedkitError):
    """A highlight cannot be computed or written (message names the file and the way out)."""


@dataclass
class Highlight:
    """The chosen segment of one track and the curve it was chosen on.

    ``start_s``/``end_s``: seconds from the file's start (0 ≤ start < end ≤ ``duration_s``);
    ``curve``: ``(T,)`` per-patch scores on ``patch_start_s`` ``(T,)`` seconds; ``window``: patches summed.
    """

    path: str
    method: str
    start_s: float
    end_s: float
    duration_s: float
    length_s: float
    whole_file: bool
    curve: np.ndarray
    patch_start_s: np.ndarray
    window: int
    score: float
    target: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self, *, curve: bool = False) -> dict:
        d = {"path": self.path, "method": self.method, "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
             "duration_s": round(self.duration_s, 3), "length_s": self.length_s, "whole_file": self.whole_file,
             "score": self.score, "target": self.target, "window_patches": self.window}
        d.update(self.extra)
        if curve:
            d["curve"] = [float(x) for x in self.curve]
            d["patch_start_s"] = [round(float(x), 3) for x in self.patch_start_s]
        return d


# ---- curves (one score per patch) ------------------------------------------------------------------


def attention_curve(head: Any, patches: np.ndarray, target: str | None = None) -> tuple[np.ndarray, str | None, np.ndarray]:
    """Huang et al.'s curve: attention weight × activation of ``target`` per patch.

    ``head``: a fitted `AttentionHead`; ``patches``: ``(T, D)``. ``target``: class / label name (None =
    the track's predicted class, or its most probable label). Returns ``(curve (T,), target, weights (T,))``.
    """
    ex = head.explain_one(patches)
    w, act = ex["weights"], ex["activations"]
    if head.task == "regression":
        return w.copy(), None, w
    names = head.output_names
    if target is None:
        k = int(np.argmax(ex["output"]))
    elif target in names:
        k = names.index(target)
    else:
        raise HighlightError(f"the head has no class or label {target!r} (it knows: {', '.join(names[:10])})")
    return w * act[:, k], names[k], w


def tag_curve(patch_tags: np.ndarray, labels: Sequence[str] | None = None, top_k: int = TOP_TAGS) -> tuple[np.ndarray, list[str]]:
    """Teacher's tag activity: ``patch_tags (T, n_tags)`` → per-patch sum of the track's top-``k`` tags."""
    pt = np.asarray(patch_tags, np.float64)
    top = np.argsort(-pt.mean(axis=0), kind="stable")[:top_k]
    names = [labels[i] for i in top] if labels is not None else [str(i) for i in top]
    return pt[:, top].sum(axis=1), names


def loudness_curve(y16: np.ndarray, n_patches: int | None = None) -> np.ndarray:
    """Mean energy (mean square) of each patch-length stretch of ``y16 (n,) float32`` at 16 kHz."""
    y = np.asarray(y16, np.float64)
    T = max(1, math.ceil(y.size / PATCH_SAMPLES)) if n_patches is None else n_patches
    out = np.zeros(T)
    for t in range(T):
        seg = y[t * PATCH_SAMPLES:(t + 1) * PATCH_SAMPLES]
        out[t] = float(np.mean(seg * seg)) if seg.size else 0.0
    return out


def repetition_curve(patches: np.ndarray, min_gap: int = 2, top_k: int = 3) -> np.ndarray:
    """How repeated each patch is ``(T,)``: the mean of its ``top_k`` largest cosine similarities (of
    standardised patch vectors) to patches at least ``min_gap`` patches away."""
    P = np.asarray(patches, np.float64)
    T = P.shape[0]
    if T == 1:
        return np.ones(1)
    Z = P - P.mean(axis=0)
    sd = P.std(axis=0)
    Z = Z / np.where(sd > 1e-12, sd, 1.0)
    Z /= np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
    S = Z @ Z.T
    idx = np.arange(T)
    far = np.abs(idx[:, None] - idx[None, :]) >= min(min_gap, T - 1)
    S = np.where(far, S, -np.inf)
    k = max(1, min(top_k, int(far.sum(axis=1).min())))
    top = -np.sort(-S, axis=1)[:, :k]
    return np.where(np.isfinite(top), top, 0.0).mean(axis=1)


# ---- choosing the window -----------------------------------------------------------------------------


def best_window(curve: np.ndarray, window: int) -> tuple[int, float]:
    """Start index and sum of the ``window`` consecutive entries of ``curve`` with the largest sum
    (the earliest one on ties)."""
    c = np.asarray(curve, np.float64)
    window = max(1, min(int(window), c.size))
    sums = np.convolve(c, np.ones(window), mode="valid")
    k = int(np.argmax(sums))
    return k, float(sums[k])


def choose(curve: np.ndarray, patch_start_s: np.ndarray, duration_s: float, length_s: float) -> tuple[float, float, int, float, bool]:
    """``(start_s, end_s, window, score, whole_file)`` of the best ``length_s`` window; the whole file
    when it is no longer than ``length_s``. Bounds always lie in ``[0, duration_s]``."""
    if length_s <= 0:
        raise HighlightError(f"highlight length must be positive, given {length_s}")
    duration_s = float(duration_s)
    if duration_s <= length_s or len(curve) <= 1:
        return 0.0, duration_s, len(curve), float(np.sum(curve)), True
    window = max(1, min(len(curve), math.ceil(length_s / HOP_S - 1e-9)))
    k, score = best_window(curve, window)
    centre = float(patch_start_s[k]) + min(window * HOP_S, duration_s - float(patch_start_s[k])) / 2
    start = min(max(0.0, centre - length_s / 2), duration_s - length_s)
    return start, start + length_s, window, score, False


# ---- the API ---------------------------------------------------------------------------------------


class Highlighter:
    """Find the highlight of tracks by ``method`` (one of `METHODS`).

    ``head``: a fitted `AttentionHead` or the path of a saved one (needed by ``attention``);
    ``target``: the class / label to highlight (attention; None = each track's predicted one);
    ``length_s``: seconds of the highlight; ``model``: the embedder for ``tags``/``repetition`` when
    there is no head (default ``msd_vgg``); ``embedder``: an already loaded `Embedder` to reuse.
    """

    def __init__(self, method: str = "attention", *, head: Any = None, target: str | None = None, length_s: float = 30.0,
                 model: str | None = None, embedder: Any = None, batch_size: int = 32) -> None:
        if method not in METHODS:
            raise HighlightError(f"unknown highlight method {method!r}; expected one of {', '.join(METHODS)}")
        if length_s <= 0:
            raise HighlightError(f"highlight length must be positive, given {length_s}")
        if isinstance(head, (str, os.PathLike)):
            from .heads.attention import AttentionHead

            head = AttentionHead.load(head)
        if method == "attention" and head is None:
            raise HighlightError("the attention method needs a trained attention head (--head HEAD); "
                                 "or choose --method tags, loudness or repetition")
        self.method = method
        self.head = head
        self.target = target
        self.length_s = float(length_s)
        card = getattr(head, "card_", None) or {}
        self.model = model or card.get("model") or "msd_vgg"
        self.layers = card.get("store_layers") if head is not None else None
        self._embedder = embedder
        self.batch_size = batch_size

    @property
    def needs_network(self) -> bool:
        return self.method != "loudness"

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from .embedder import Embedder

            self._embedder = Embedder.from_pretrained(self.model, batch_size=self.batch_size)
            card = getattr(self.head, "card_", None) or {}
            fp = card.get("model_fingerprint")
            if fp and getattr(self._embedder, "fingerprint", fp) != fp:
                from .errors import ModelMismatchError

                raise ModelMismatchError(f"head was trained on {card.get('model')} vectors of fingerprint {fp[:16]}…, "
                                         f"the installed model's is {self._embedder.fingerprint[:16]}…; "
                                         "retrain the head or fetch the model it was made with")
        return self._embedder

    def from_patches(self, path: str, *, duration_s: float, patch_start_s: np.ndarray, patches: np.ndarray | None = None,
                     patch_tags: np.ndarray | None = None, y16: np.ndarray | None = None,
                     tag_labels: Sequence[str] | None = None) -> Highlight:
        """The highlight from what is already computed: ``patches (T, D)``, ``patch_tags (T, n_tags)``,
        ``y16`` (16-kHz mono samples, for loudness), on the patch grid ``patch_start_s (T,)`` seconds."""
        starts = np.asarray(patch_start_s, np.float64)
        extra: dict = {}
        target = None
        if self.method == "attention":
            curve, target, w = attention_curve(self.head, patches, self.target)
            extra["attention_peak_s"] = round(float(starts[int(np.argmax(w))]), 3)
        elif self.method == "tags":
            if patch_tags is None:
                raise HighlightError(f"{path}: no per-patch tag probabilities for the tags method")
            curve, names = tag_curve(patch_tags, tag_labels)
            extra["tags"] = names
        elif self.method == "loudness":
            if y16 is None:
                raise HighlightError(f"{path}: the loudness method needs the audio")
            curve = loudness_curve(y16, len(starts))
        else:
            curve = repetition_curve(patches)
        start, end, window, score, whole = choose(curve, starts, duration_s, self.length_s)
        return Highlight(path=str(path), method=self.method, start_s=start, end_s=end, duration_s=float(duration_s),
                         length_s=self.length_s, whole_file=whole, curve=np.asarray(curve, np.float64), patch_start_s=starts,
                         window=window, score=score, target=target, extra=extra)

    def highlight_audio(self, y16: np.ndarray, *, path: str = "<audio>") -> Highlight:
        """The highlight of 16-kHz mono samples ``y16 (n,) float32``."""
        duration = y16.size / SR
        if self.method == "loudness":
            T = max(1, math.ceil(y16.size / PATCH_SAMPLES))
            return self.from_patches(path, duration_s=duration, patch_start_s=np.arange(T) * HOP_S, y16=y16)
        te = self.embedder.embed_audio(y16, SR, layers=self.layers, return_patches=True)
        return self.from_patches(path, duration_s=duration, patch_start_s=te.patch_start_s, patches=te.patch_vectors,
                                 patch_tags=te.patch_tags, y16=y16, tag_labels=getattr(self.embedder, "labels", None))

    def highlight_file(self, path: str | os.PathLike) -> Highlight:
        """The highlight of one audio file (decoded whole, at 16 kHz mono)."""
        from . import audio

        y16 = audio.load(path, sr=SR)
        return self.highlight_audio(y16, path=str(path))

    def highlight_files(self, paths: Iterable[str | os.PathLike]) -> Iterator[Highlight | tuple[str, str]]:
        """Highlights of many files; a file that fails yields ``(path, one-line error)`` and the rest go on."""
        for p in paths:
            try:
                yield self.highlight_file(p)
            except EmbedkitError as exc:
                yield str(p), str(exc)

    def highlight_store_item(self, store: Any, item: Any) -> Highlight:
        """The highlight of a store item from its per-patch vectors (attention, repetition); the tags
        and loudness methods decode the item's file (a store keeps no per-patch tags or samples)."""
        if self.method in ("tags", "loudness"):
            return self.highlight_file(item.path)
        if not store.has_patches:
            raise HighlightError(f"{store.path}: store has no per-patch vectors (embed it with --patches), "
                                 "or highlight the files themselves")
        _, starts, P = store.patch_vectors([int(item.id)])
        if P.shape[0] == 0:
            raise HighlightError(f"{item.path}: no per-patch vectors in {store.path}")
        duration = float(item.duration_s or (starts[-1] + HOP_S))
        return self.from_patches(item.path, duration_s=duration, patch_start_s=starts, patches=P)

    # -- outputs
    def thumbnail(self, h: Highlight, out: str | os.PathLike, *, fade_s: float = 0.5, overwrite: bool = False) -> Path:
        """Write the highlight of ``h.path`` to ``out`` (.ogg / .flac / .wav: mono, the file's sample rate,
        half-cosine fades of ``fade_s`` seconds), atomically."""
        return write_thumbnail(h.path, h.start_s, h.end_s, out, fade_s=fade_s, overwrite=overwrite)


def write_thumbnail(src: str | os.PathLike, start_s: float, end_s: float, out: str | os.PathLike, *,
                    fade_s: float = 0.5, overwrite: bool = False) -> Path:
    """Cut ``[start_s, end_s)`` of ``src`` into ``out`` with fades; the format follows ``out``'s suffix."""
    import soundfile as sf

    from . import audio

    out = Path(out)
    fmt = AUDIO_FORMATS.get(out.suffix.lower().lstrip("."))
    if fmt is None:
        raise HighlightError(f"{out}: thumbnail format must be one of {', '.join('.' + k for k in AUDIO_FORMATS)}")
    if out.exists() and not overwrite:
        raise HighlightError(f"{out}: already exists (use --force to replace it)")
    sr = audio.probe(src).samplerate
    y = audio.load(src, sr=sr, offset_s=start_s, duration_s=end_s - start_s).astype(np.float64)
    n = min(int(round(fade_s * sr)), y.size // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n))
        y[:n] *= ramp
        y[-n:] *= ramp[::-1]
    y = np.clip(y, -1.0, 1.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        sf.write(tmp, y.astype(np.float32), sr, format=fmt[0], subtype=fmt[1])
        os.replace(tmp, out)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, EmbedkitError):
            raise
        raise HighlightError(f"{out}: could not write the thumbnail ({type(exc).__name__}: {exc})") from None
    return out


def plot_curve(h: Highlight, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """PNG of ``h``'s curve over the track (one step per patch) with the chosen window shaded."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise HighlightError(f"{out}: drawing the curve needs matplotlib: pip install 'embedkit[plots]', "
                             "or pass --no-plot") from None

    out = Path(out)
    if out.exists() and not overwrite:
        raise HighlightError(f"{out}: already exists (use --force to replace it)")
    fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
    try:
        x = np.append(h.patch_start_s, h.patch_start_s[-1] + HOP_S if len(h.patch_start_s) else HOP_S)
        if x[-1] > h.duration_s > x[-2]:
            x[-1] = h.duration_s  # the last patch is partial (or padded)
        ax.stairs(h.curve, x, color="#1f77b4", lw=1.5)
        ax.axvspan(h.start_s, h.end_s, color="#ff7f0e", alpha=0.3, label=f"highlight {h.start_s:.1f}–{h.end_s:.1f} s")
        ax.set_xlim(0, x[-1])
        ax.set_xlabel("time (s)")
        ax.set_ylabel({"attention": "attention × activation", "tags": "top-tag activity", "loudness": "mean energy",
                       "repetition": "self-similarity"}[h.method])
        ax.set_title(f"{Path(h.path).name} — {h.method}" + (f" ({h.target})" if h.target else ""), fontsize=9)
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp.png")
        fig.savefig(tmp)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
    return out
