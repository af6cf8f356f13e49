"""Log-mel front end exactly as musicnn's pretrained models expect, and 3-s patching.

Recipe (musicnn 0.1.0 ``extractor.batch_data`` under librosa 0.7 / numpy 1.x; see
``shared/reference/README.md``): 16 kHz mono → STFT (n_fft 512, hop 256, periodic Hann, centred with
*reflect* padding) → power → 96 Slaney-normalised Slaney-scale mel bands (0–8 kHz) → quantise to float16
→ ``log10(10000·x + 1)`` computed in float32 → ``(frames, 96) float32`` with ``frames = 1 + n // 256``.
Patches are 187 frames (≈ 2.99 s), non-overlapping, trailing partial patch dropped; a clip shorter
than one patch is repeat-padded (as musicnn's training did).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SR = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187
FMAX = SR / 2
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa ``htk=False``), float64."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = hz / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = hz >= min_log_hz
    mels = np.where(log_t, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, mels)
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = mels >= min_log_mel
    return np.where(log_t, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freqs)


@lru_cache(maxsize=4)
def mel_filterbank(sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS, fmax: float = FMAX) -> np.ndarray:
    """Slaney mel filterbank, ``(1 + n_fft // 2, n_mels) float32`` (transposed librosa ``filters.mel``)."""
    fftfreqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, len(fftfreqs)), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    weights.setflags(write=False)
    return np.ascontiguousarray(weights.T)


@lru_cache(maxsize=2)
def _hann(n_fft: int = N_FFT) -> np.ndarray:
    """Periodic Hann window (scipy ``get_window('hann', n, fftbins=True)``), float64."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)


def _frames_to_logmel(padded: np.ndarray, n_frames: int) -> np.ndarray:
    """Log-mel of ``n_frames`` frames taken every HOP samples from an already padded signal."""
    if n_frames <= 0:
        return np.zeros((0, N_MELS), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(padded[: (n_frames - 1) * HOP + N_FFT], N_FFT)[::HOP]
    spec = np.fft.rfft(frames * _hann(), axis=1).astype(np.complex64)
    power = np.abs(spec) ** 2  # float32; |X|**2 (not re²+im²) is bit-identical to librosa
    if n_frames == 1:  # keep BLAS on its matrix-matrix path so a frame's value never depends on batching
        mel = (np.repeat(power, 2, axis=0) @ mel_filterbank())[:1]
    else:
        mel = power @ mel_filterbank()
    # musicnn's float16 quantisation, then log in float32 (numpy 1.x semantics; numpy 2 would keep
    # float16 and overflow). Clipping only guards against absurd inputs (|y| >> 1) turning into inf.
    mel = np.minimum(mel, _FLOAT16_MAX).astype(np.float16).astype(np.float32)
    return np.log10(np.float32(10000.0) * mel + np.float32(1.0))


def logmel(y: np.ndarray) -> np.ndarray:
    """Log-mel of a whole 16 kHz mono signal ``(n,) float32`` → ``(1 + n // 256, 96) float32``."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"logmel expects a non-empty 1-D signal, given y.shape={y.shape}")
    pad = N_FFT // 2
    padded = np.pad(y, pad, mode="reflect") if y.size > pad else np.pad(y, pad, mode="symmetric")
    return _frames_to_logmel(padded, 1 + y.size // HOP)


class LogMelStream:
    """Incremental `logmel`: push 16 kHz blocks, get finished frames; identical to the one-shot result.

    Holds at most one block plus 512 samples, so arbitrarily long recordings use constant memory.
    """

    _START = 4 * N_FFT  # samples buffered before the first frame (reflect padding needs 257)

    def __init__(self) -> None:
        self._head: list[np.ndarray] = []  # raw samples until the stream has started
        self._buf: np.ndarray | None = None  # padded signal from frame ``_t`` on
        self._t = 0  # next frame index
        self._n = 0  # samples seen
        self._tail = np.zeros(0, np.float32)  # last N_FFT//2 + 1 raw samples

    @property
    def n_samples(self) -> int:
        return self._n

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add ``(k,) float32`` samples; return the ``(m, 96)`` frames that are now complete."""
        block = np.asarray(block, dtype=np.float32).ravel()
        if block.size == 0:
            return np.zeros((0, N_MELS), np.float32)
        self._n += block.size
        keep = N_FFT // 2 + 1
        self._tail = np.concatenate([self._tail, block[-keep:]])[-keep:]
        if self._buf is None:
            self._head.append(block)
            if self._n < self._START:
                return np.zeros((0, N_MELS), np.float32)
            y = np.concatenate(self._head)
            self._head = []
            self._buf = np.concatenate([y[1 : N_FFT // 2 + 1][::-1], y])
        else:
            self._buf = np.concatenate([self._buf, block])
        return self._emit(final=False)

    def _emit(self, *, final: bool) -> np.ndarray:
        assert self._buf is not None
        available = (self._buf.size - N_FFT) // HOP + 1 if self._buf.size >= N_FFT else 0
        if final:
            available = min(available, 1 + self._n // HOP - self._t)
        out = _frames_to_logmel(self._buf, available)
        self._t += available
        self._buf = self._buf[available * HOP :]
        return out

    def finish(self) -> np.ndarray:
        """Flush: the remaining frames, using reflect padding at the end of the signal."""
        if self._buf is None:
            if not self._head:
                return np.zeros((0, N_MELS), np.float32)
            out = logmel(np.concatenate(self._head))
            self._head = []
            self._t = out.shape[0]
            return out
        self._buf = np.concatenate([self._buf, self._tail[-(N_FFT // 2 + 1) : -1][::-1]])
        out = self._emit(final=True)
        self._buf = None
        return out


def iter_logmel(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Log-mel frames ``(m, 96) float32`` for a stream of 16 kHz blocks (see `LogMelStream`)."""
    stream = LogMelStream()
    for block in blocks:
        frames = stream.push(block)
        if frames.shape[0]:
            yield frames
    frames = stream.finish()
    if frames.shape[0]:
        yield frames


@dataclass
class Patches:
    """Model input: ``data`` ``(n_patches, 187, 96) float32``; ``start_frames`` ``(n_patches,) int64``.

    ``padded`` is True when the clip was shorter than one patch and was repeat-padded;
    ``frames_dropped`` counts trailing frames that did not fill a patch.
    """

    data: np.ndarray
    start_frames: np.ndarray
    padded: bool
    frames_dropped: int

    @property
    def start_s(self) -> np.ndarray:
        """Patch start times in seconds, ``(n_patches,) float64``."""
        return self.start_frames * (HOP / SR)


def make_patches(frames: np.ndarray, *, patch_frames: int = PATCH_FRAMES, hop_frames: int | None = None) -> Patches:
    """Cut a ``(T, 96)`` log-mel into ``(n, patch_frames, 96)`` patches (non-overlapping by default).

    Clips shorter than one patch are tiled (repeat-padded) to exactly one patch.
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 2 or frames.shape[1] != N_MELS:
        raise ValueError(f"expected (frames, {N_MELS}) log-mel, given shape={frames.shape}")
    if frames.shape[0] == 0:
        raise ValueError("cannot patch an empty log-mel (0 frames)")
    hop = hop_frames or patch_frames
    n_total = frames.shape[0]
    if n_total < patch_frames:
        reps = -(-patch_frames // n_total)
        data = np.tile(frames, (reps, 1))[:patch_frames][None]
        return Patches(data, np.zeros(1, np.int64), True, 0)
    starts = np.arange(0, n_total - patch_frames + 1, hop, dtype=np.int64)
    view = np.lib.stride_tricks.sliding_window_view(frames, patch_frames, axis=0)[starts]
    data = np.ascontiguousarray(view.transpose(0, 2, 1))
    dropped = int(n_total - (starts[-1] + patch_frames))
    return Patches(data, starts, False, dropped)
