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

from . import audio, frontend
from .errors import AudioError, EmbedkitError
from .features import FeatureLayout, aggregate

#: Patches a decode worker hands over at a time (≈ 1.6 min of audio, 4.5 MB).
_CHUNK_PATCHES = 32
#: Maximum chunks waiting for the network: bounds memory to ~_QUEUE_CHUNKS × 4.5 MB.
_QUEUE_CHUNKS = 16


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


class Embedder:
    """A pretrained model loaded once; embeds audio into multi-layer "convnet features".

    >>> emb = Embedder.from_pretrained("msd_vgg")          # doctest: +SKIP
    >>> emb.embed_file("song.ogg").vector.shape             # doctest: +SKIP
    (640,)
    """

    sample_rate = frontend.SR

    def __init__(self, name: str, card: dict, weights_path: str | os.PathLike, *, batch_size: int = 32) -> None:
        from .network import Network

        self.name = name
        self.card = card
        self.labels: list[str] = list(card["labels"])
        self.layout = FeatureLayout.from_card(card)
        self.batch_size = batch_size
        self._net = Network(card["architecture"], str(weights_path), self.layout, batch_size=batch_size)
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, name: str = "msd_vgg", *, batch_size: int = 32) -> "Embedder":
        """Load a converted pretrained model from the cache (see ``embedkit models fetch``)."""
        from . import pretrained

        name = pretrained.check_name(name)
        path = pretrained.weights_path(name)
        return cls(name, pretrained.card(name), path, batch_size=batch_size)

    # ---- identity -------------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights' values + preprocessing + feature layout: same fingerprint ⇒ same vectors."""
        from . import pretrained

        return pretrained.fingerprint(self.card)

    # ---- core -----------------------------------------------------------------------------------

    def forward(self, patches: np.ndarray):
        """Network on ``(n, 187, 96) float32`` patches → `embedkit.network.PatchOutputs` (features, logits, tags)."""
        with self._lock:
            return self._net(patches)

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
        patches = frontend.make_patches(frontend.logmel(y16))
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
            while not stop.is_set():
                with index_lock:
                    i = next(next_index, None)
                if i is None:
                    break
                _decode_into(i, paths[i], excerpt_s, work, stop)
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
        order = np.argsort(-tags, kind="stable")[: top_k or len(self.labels)]
        return [(self.labels[j], float(tags[j])) for j in order]


def _decode_into(i: int, path: str, excerpt_s: float | None, work: queue.Queue, stop: threading.Event) -> None:
    """Decode one file into patch chunks on ``work``; ends with a ("done", i, info) or ("error", i, msg)."""
    try:
        info = audio.probe(path)
        offset = 0.0
        duration = None
        if excerpt_s is not None and excerpt_s > 0:
            if info.duration_s is not None and info.duration_s > excerpt_s:
                offset = (info.duration_s - excerpt_s) / 2.0
            duration = excerpt_s
        stream = frontend.LogMelStream()
        frames_buf = np.zeros((0, frontend.N_MELS), np.float32)
        emitted = 0  # frames already cut into patches
        n_patches = 0

        def cut(final: bool) -> None:
            nonlocal frames_buf, emitted, n_patches
            n = frames_buf.shape[0] // frontend.PATCH_FRAMES
            if n and (final or n >= _CHUNK_PATCHES):
                take = n * frontend.PATCH_FRAMES
                data = frames_buf[:take].reshape(n, frontend.PATCH_FRAMES, frontend.N_MELS)
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
            p = frontend.make_patches(frames_buf)
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


def load_embedder(name: str = "msd_vgg", **kwargs) -> Embedder:
    """Shorthand for `Embedder.from_pretrained`."""
    return Embedder.from_pretrained(name, **kwargs)


__all__: Sequence[str] = ("Embedder", "TrackEmbedding", "FileFailure", "load_embedder")
