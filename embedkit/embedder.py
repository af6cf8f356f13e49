"""`Embedder`: load a pretrained model once, embed files, arrays or whole batches of files.

Pipeline per file: decode + resample (`embedkit.audio`) → log-mel (`embedkit.frontend`) → 187-frame patches →
network (`embedkit.network`) → per-patch multi-layer features → per-track aggregate (`embedkit.features`).
`embed_files` decodes on worker threads (libsndfile, soxr and numpy's FFT release the GIL) while the
network runs on batches of patches gathered across files; long files stream through in bounded memory.
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import audio, frontend, inputs
from .errors import AudioError, EmbedkitError
from .features import FeatureLayout, aggregate

#: Patches a decode worker hands over at a time (≈ 1.6 min of audio, 4.5 MB).
_CHUNK_PATCHES = 32
#: Maximum chunks waiting for the network: bounds memory to ~_QUEUE_CHUNKS × 4.5 MB.
_QUEUE_CHUNKS = 16
#: Decode threads run this much nicer than the caller (Linux: per-thread priority), so that on a machine
#: whose cores the network keeps busy they fill the network's gaps instead of stalling its synchronised
#: oneDNN threads; they still get whole cores when the network waits for patches. 0 = off.
DECODE_NICE = 0


def _nicer_thread(delta: int) -> None:
    """Lower the calling thread's scheduling priority by ``delta`` (no-op where unsupported)."""
    if delta <= 0 or not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + delta))
    except OSError:
        pass


@dataclass
class TrackEmbedding:
    """One track's embedding.

    ``vector``: ``(D,) float32`` aggregated feature (D = selected blocks' sizes, ×2 for ``mean+std``);
    ``tags``: ``(n_labels,) float32`` mean tag probability over patches; ``patch_*``: per-patch outputs
    ``(n_patches, D_sel)``, ``(n_patches, n_labels)``, ``(n_patches,)`` seconds, when asked for.
    """

    path: str | None
    vector: np.ndarray
    tags: np.ndarray
    n_patches: int
    padded: bool
    duration_s: float
    samplerate: int
    patch_vectors: np.ndarray | None = None
    patch_tags: np.ndarray | None = None
    patch_start_s: np.ndarray | None = None
    offset_s: float = 0.0

    ok = True


@dataclass
class FileFailure:
    """A file that could not be embedded; ``error`` is one line that names the file."""

    path: str
    error: str
    exception: EmbedkitError | None = field(default=None, repr=False, compare=False)
    ok = False


@dataclass
class _Pending:
    """Accumulates one file's per-patch outputs until its last patch is through the network."""

    path: str | None
    info: dict = field(default_factory=dict)
    feats: list[np.ndarray] = field(default_factory=list)
    tags: list[np.ndarray] = field(default_factory=list)
    starts: list[np.ndarray] = field(default_factory=list)
    queued: int = 0  # patches handed over, not yet through the network
    done_decoding: bool = False
    error: EmbedkitError | None = None


@dataclass
class _Member:
    """One network of an embedder: model name, card, feature layout, the loaded network, weight fingerprint."""

    name: str
    card: dict
    layout: FeatureLayout
    net: object
    fingerprint: str


class Embedder:
    """One or several pretrained models loaded once; embeds audio into multi-layer "convnet features".

    Several models (``"msd_vgg+msd_musicnn"``) share one decode and one log-mel: every network runs on the
    same patches and the per-patch features are concatenated in model order, blocks named
    ``"msd_vgg:pool1"`` ... ``"msd_musicnn:penultimate"`` (`embedkit.composite`); tags likewise
    (``"msd_vgg:rock"``). ``precision`` is ``fp32`` (default, the reference), ``bf16``, ``int8``, ``int8dyn`` or ``auto``
    (`embedkit.precision`).

    >>> emb = Embedder.from_pretrained("msd_vgg")          # doctest: +SKIP
    >>> emb.embed_file("song.ogg").vector.shape             # doctest: +SKIP
    (640,)
    """

    sample_rate = frontend.SR

    def __init__(self, name: str, card: dict, weights_path: str | os.PathLike, *, batch_size: int = 32,
                 precision: str = "fp32") -> None:
        from . import precision as _precision

        p = _precision.check(precision)
        if p == "auto":
            p = _precision.resolve(p, name, batch_size=batch_size)
        layout = FeatureLayout.from_card(card)
        net = _load_network(card, str(weights_path), layout, batch_size=batch_size, precision=p)
        from . import pretrained

        self._setup([_Member(name, card, layout, net, pretrained.fingerprint(card))], batch_size, p)

    def _setup(self, members: list[_Member], batch_size: int, precision: str) -> None:
        from . import composite

        kinds = {inputs.for_card(m.card).name for m in members}
        if len(kinds) > 1:
            raise EmbedkitError(f"cannot combine models with different inputs ({', '.join(sorted(kinds))}): "
                                f"{composite.join(m.name for m in members)}")
        self.input_kind = inputs.for_card(members[0].card)
        self._members = members
        self.batch_size = batch_size
        self.precision = precision
        self.models: tuple[str, ...] = tuple(m.name for m in members)
        self.name = composite.join(self.models)
        self._lock = threading.Lock()
        if len(members) == 1:
            m = members[0]
            self.card = m.card
            self.labels: list[str] = list(m.card["labels"])
            self.layout = m.layout
            self._net = m.net
        else:
            self.layout = composite.combined_layout([(m.name, m.layout) for m in members])
            self.labels = composite.combined_labels([(m.name, list(m.card["labels"])) for m in members])
            self.card = composite.combined_card([m.card for m in members], self.layout, self.labels)
            self._net = None

    @classmethod
    def from_pretrained(cls, name: str = "msd_vgg", *, batch_size: int = 32, precision: str = "fp32") -> "Embedder":
        """Load converted pretrained model(s) from the cache (see ``embedkit models fetch``).

        ``name``: one model (``"msd_vgg"``) or several joined with ``+`` (``"msd_vgg+msd_musicnn"``).
        """
        from . import composite, pretrained
        from . import precision as _precision

        names = composite.split(name)
        p = _precision.check(precision)
        if p == "auto":
            p = _precision.resolve(p, composite.join(names), batch_size=batch_size)
        parts = [cls(n, pretrained.card(n), pretrained.weights_path(n), batch_size=batch_size, precision=p)
                 for n in names]
        return parts[0] if len(parts) == 1 else cls.combine(parts)

    @classmethod
    def combine(cls, embedders: Sequence["Embedder"]) -> "Embedder":
        """One embedder that runs all of ``embedders``' networks on the same patches (same batch size and precision)."""
        embedders = list(embedders)
        if not embedders:
            raise ValueError("combine needs at least one embedder")
        precs = {e.precision for e in embedders}
        if len(precs) > 1:
            raise ValueError(f"cannot combine embedders of different precisions: {', '.join(sorted(precs))}")
        members = [m for e in embedders for m in e._members]
        out = cls.__new__(cls)
        out._setup(members, embedders[0].batch_size, embedders[0].precision)
        return out

    # ---- identity -------------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights' values + preprocessing + feature layout (several models: of their ordered
        fingerprints): same fingerprint and precision ⇒ same vectors."""
        from .spec import combine_fingerprints

        return combine_fingerprints([m.fingerprint for m in self._members])

    @property
    def parts(self) -> tuple:
        """`embedkit.spec.ModelPart` of each model, in order (what `VectorSpec.for_embedder` reads)."""
        from .spec import ModelPart

        return tuple(ModelPart(m.name, m.fingerprint, tuple(m.layout.blocks)) for m in self._members)

    def spec(self, *, layers=None, aggregation: str = "mean", excerpt_s: float | None = None):
        """The `embedkit.spec.VectorSpec` of the vectors this embedder makes with these settings."""
        from .spec import VectorSpec

        return VectorSpec.for_embedder(self, layers=layers, aggregation=aggregation, excerpt_s=excerpt_s)

    # ---- core -----------------------------------------------------------------------------------

    def forward(self, patches: np.ndarray):
        """Network(s) on ``(n, 187, 96) float32`` patches → `embedkit.network.PatchOutputs` (features, logits,
        tags; several models: each model's columns side by side, in model order)."""
        with self._lock:
            if len(self._members) == 1:
                return self._members[0].net(patches)
            from .network import PatchOutputs

            outs = [m.net(patches) for m in self._members]
            return PatchOutputs(*(np.concatenate([getattr(o, k) for o in outs], axis=1)
                                  for k in ("features", "logits", "tags")))

    def _finish(self, pend: _Pending, layers, aggregation: str, return_patches: bool) -> TrackEmbedding:
        feats = np.concatenate(pend.feats)
        tags = np.concatenate(pend.tags)
        sel = self.layout.select(feats, layers)
        starts = np.concatenate(pend.starts) * (frontend.HOP / frontend.SR) + pend.info.get("offset_s", 0.0)
        return TrackEmbedding(
            path=pend.path,
            vector=aggregate(sel, aggregation),
            tags=tags.mean(axis=0, dtype=np.float64).astype(np.float32),
            n_patches=int(feats.shape[0]),
            padded=bool(pend.info.get("padded", False)),
            duration_s=float(pend.info.get("duration_s", 0.0)),
            samplerate=int(pend.info.get("samplerate", frontend.SR)),
            patch_vectors=np.ascontiguousarray(sel) if return_patches else None,
            patch_tags=tags if return_patches else None,
            patch_start_s=starts if return_patches else None,
            offset_s=float(pend.info.get("offset_s", 0.0)),
        )

    def embed_audio(
        self, y: np.ndarray, sr: int, *, layers=None, aggregate: str = "mean", return_patches: bool = False
    ) -> TrackEmbedding:
        """Embed an in-memory signal ``(n,)`` or ``(n, channels)`` at ``sr`` Hz."""
        y16 = audio.to_mono_resampled(y, sr, target_sr=self.sample_rate)
        patches = self.input_kind.patches(y16)
        out = self.forward(patches.data)
        pend = _Pending(None, {"padded": patches.padded, "duration_s": y16.size / self.sample_rate, "samplerate": sr},
                        [out.features], [out.tags], [patches.start_frames])
        return self._finish(pend, layers, aggregate, return_patches)

    def embed_file(
        self, path: str | os.PathLike, *, layers=None, aggregate: str = "mean", excerpt_s: float | None = None,
        return_patches: bool = False,
    ) -> TrackEmbedding:
        """Embed one file. Raises `embedkit.errors.AudioError` (one line naming the file) on bad input."""
        (result,) = list(self.embed_files([path], layers=layers, aggregate=aggregate, excerpt_s=excerpt_s,
                                          return_patches=return_patches, workers=1))
        if isinstance(result, FileFailure):
            raise result.exception or EmbedkitError(result.error)
        return result

    def embed_files(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        layers=None,
        aggregate: str = "mean",
        excerpt_s: float | None = None,
        return_patches: bool = False,
        workers: int = 2,
    ) -> Iterator[TrackEmbedding | FileFailure]:
        """Embed many files; yields one `TrackEmbedding` or `FileFailure` per path, in input order.

        ``workers`` threads decode ahead while the network runs on full batches of patches from several files.
        A bad file never stops the batch. ``excerpt_s`` embeds only a centred excerpt of that many seconds.
        """
        self.layout.parse_layers(layers)  # fail fast on a bad layer list
        paths = [str(p) for p in paths]
        if not paths:
            return
        work: queue.Queue = queue.Queue(maxsize=_QUEUE_CHUNKS)
        next_index = iter(range(len(paths)))
        index_lock = threading.Lock()
        stop = threading.Event()

        def worker() -> None:
            _nicer_thread(DECODE_NICE)
            while not stop.is_set():
                with index_lock:
                    i = next(next_index, None)
                if i is None:
                    break
                _decode_into(i, paths[i], excerpt_s, work, stop, self.input_kind)
            work.put(("worker_done", None, None))

        n_workers = max(1, min(int(workers), len(paths)))
        threads = [threading.Thread(target=worker, daemon=True, name=f"embedkit-decode-{k}") for k in range(n_workers)]
        for t in threads:
            t.start()
        pending: dict[int, _Pending] = {}
        batch: list[tuple[int, np.ndarray]] = []
        batch_n = 0
        next_out = 0
        live = n_workers

        def run_batch() -> None:
            nonlocal batch, batch_n
            if not batch:
                return
            out = self.forward(np.concatenate([b for _, b in batch]))
            pos = 0
            for i, chunk in batch:
                m = chunk.shape[0]
                pend = pending[i]
                pend.feats.append(out.features[pos : pos + m])
                pend.tags.append(out.tags[pos : pos + m])
                pend.queued -= m
                pos += m
            batch, batch_n = [], 0

        try:
            while next_out < len(paths):
                # emit finished files in input order
                while next_out in pending and pending[next_out].done_decoding and pending[next_out].queued == 0:
                    pend = pending.pop(next_out)
                    if pend.error is not None:
                        yield FileFailure(paths[next_out], str(pend.error), pend.error)
                    else:
                        yield self._finish(pend, layers, aggregate, return_patches)
                    next_out += 1
                if next_out >= len(paths):
                    break
                kind, i, payload = work.get()
                if kind == "worker_done":
                    live -= 1
                    if live == 0:
                        run_batch()
                    continue
                pend = pending.setdefault(i, _Pending(paths[i]))
                if kind == "patches":
                    data, starts = payload
                    pend.starts.append(starts)
                    pend.queued += data.shape[0]
                    batch.append((i, data))
                    batch_n += data.shape[0]
                    if batch_n >= self.batch_size:
                        run_batch()
                elif kind == "done":
                    pend.info = payload
                    pend.done_decoding = True
                elif kind == "error":
                    pend.error = payload
                    pend.done_decoding = True
                    pend.feats, pend.tags = [], []
                    if pend.queued:
                        batch = [(j, c) for j, c in batch if j != i]
                        batch_n = sum(c.shape[0] for _, c in batch)
                        pend.queued = 0
        finally:
            stop.set()
            while any(t.is_alive() for t in threads):
                try:
                    work.get_nowait()
                except queue.Empty:
                    pass
                for t in threads:
                    t.join(timeout=0.01)

    # ---- tags -----------------------------------------------------------------------------------

    def tag(
        self, source: str | os.PathLike | np.ndarray, *, sr: int | None = None, top_k: int | None = None
    ) -> list[tuple[str, float]]:
        """Clip-level tag probabilities, highest first: ``[(tag, p), ...]`` (all labels unless ``top_k``)."""
        if isinstance(source, np.ndarray):
            if sr is None:
                raise ValueError("tag(array) needs sr=")
            emb = self.embed_audio(source, sr)
        else:
            emb = self.embed_file(source)
        return self.top_tags(emb.tags, top_k=top_k)

    def top_tags(self, tags: np.ndarray, *, top_k: int | None = None) -> list[tuple[str, float]]:
        """``[(label, p), ...]`` highest first. Several models: each model's top ``top_k``, in model order,
        labelled ``"model:tag"`` (the models' tag vocabularies and calibrations differ, so they are not ranked
        against each other)."""
        start, out = 0, []
        for m in self._members:
            n = len(m.card["labels"])
            part = tags[start : start + n]
            order = np.argsort(-part, kind="stable")[: top_k or n]
            out += [(self.labels[start + j], float(part[j])) for j in order]
            start += n
        return out


def _decode_into(i: int, path: str, excerpt_s: float | None, work: queue.Queue, stop: threading.Event,
                 kind: inputs.InputKind = inputs.KINDS["logmel"]) -> None:
    """Decode one file into patch chunks on ``work``; ends with a ("done", i, info) or ("error", i, msg)."""
    try:
        info = audio.probe(path)
        offset = 0.0
        duration = None
        if excerpt_s is not None and excerpt_s > 0:
            if info.duration_s is not None and info.duration_s > excerpt_s:
                offset = (info.duration_s - excerpt_s) / 2.0
            duration = excerpt_s
        stream = kind.stream()
        frames_buf = np.zeros((0, kind.width), np.float32)
        emitted = 0  # frames already cut into patches
        n_patches = 0

        def cut(final: bool) -> None:
            nonlocal frames_buf, emitted, n_patches
            n = frames_buf.shape[0] // frontend.PATCH_FRAMES
            if n and (final or n >= _CHUNK_PATCHES):
                take = n * frontend.PATCH_FRAMES
                data = frames_buf[:take].reshape(n, frontend.PATCH_FRAMES, kind.width)
                starts = emitted + np.arange(n, dtype=np.int64) * frontend.PATCH_FRAMES
                work.put(("patches", i, (np.ascontiguousarray(data), starts)))
                frames_buf = frames_buf[take:]
                emitted += take
                n_patches += n

        for block in audio.iter_audio(path, offset_s=offset, duration_s=duration):
            if stop.is_set():
                return
            frames = stream.push(block)
            if frames.shape[0]:
                frames_buf = np.concatenate([frames_buf, frames])
                cut(False)
        tail = stream.finish()
        if tail.shape[0]:
            frames_buf = np.concatenate([frames_buf, tail])
        cut(True)
        padded = False
        total_frames = emitted + frames_buf.shape[0]
        if n_patches == 0:
            if total_frames == 0:
                raise AudioError(path, "no audio samples decoded")
            p = kind.make_patches(frames_buf)
            work.put(("patches", i, (p.data, p.start_frames)))
            padded = True
        samples = stream.n_samples
        work.put(("done", i, {"padded": padded, "duration_s": samples / frontend.SR, "samplerate": info.samplerate,
                              "offset_s": offset, "frames_dropped": int(frames_buf.shape[0]) if not padded else 0}))
    except EmbedkitError as exc:
        work.put(("error", i, exc))
    except Exception as exc:  # never let one file kill the batch
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
        work.put(("error", i, AudioError(path, f"unexpected error ({detail})")))


def _load_network(card: dict, weights_path: str, layout: FeatureLayout, *, batch_size: int, precision: str):
    """The runnable network of one model card at ``precision`` (table-driven: the card's ``architecture``)."""
    if precision in ("int8", "int8dyn"):
        from .quantized import QuantizedNetwork

        return QuantizedNetwork(card, weights_path, layout, batch_size=batch_size, precision=precision)
    from .network import Network

    return Network(card["architecture"], weights_path, layout, batch_size=batch_size, precision=precision,
                   **inputs.network_options(card))


__all__: Sequence[str] = ("Embedder", "TrackEmbedding", "FileFailure")
