"""Decode any common audio format to mono float32 at the model rate, in bounded memory.

soundfile (libsndfile: wav, flac, ogg/vorbis, opus, mp3, aiff, ...) is tried first; PyAV (FFmpeg) takes
what libsndfile cannot open (m4a/aac, wma, video containers). Channels are averaged to mono *before*
resampling (as librosa does), and resampling uses soxr's streaming resampler, which gives the same
samples as a one-shot ``soxr.resample`` while holding only one block at a time.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AudioError

#: File extensions that `embedkit` treats as audio when it walks folders.
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".mp4", ".aac", ".aif", ".aiff",
     ".au", ".snd", ".wma", ".caf", ".w64", ".webm", ".mka"}
)

#: Samples per decoded block at the file rate (about 6 s at 44.1 kHz): bounds memory on long files.
BLOCK_FRAMES = 262_144

log = logging.getLogger("embedkit")

RESAMPLE_QUALITY = "HQ"  # soxr 'HQ' = librosa's default res_type 'soxr_hq'


@dataclass(frozen=True)
class AudioInfo:
    """What a file says about itself before decoding. ``duration_s`` may be None for some streams."""

    path: str
    samplerate: int
    channels: int
    duration_s: float | None
    decoder: str  # "soundfile" or "pyav"


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")


def _looks_like_mpeg(path: Path) -> bool:
    """ID3 tag or an MPEG frame sync at the start (libsndfile's mpg123 prints noise on anything else)."""
    with open(path, "rb") as f:
        head = f.read(3)
    return head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0)


def _soundfile_info(path: Path) -> AudioInfo | None:
    import soundfile as sf

    if path.suffix.lower() in (".mp3", ".mp2") and not _looks_like_mpeg(path):
        return None  # not MPEG audio whatever its name says: let FFmpeg judge it quietly
    try:
        info = sf.info(str(path))
    except Exception:  # libsndfile cannot open it: let PyAV try
        return None
    duration = info.frames / info.samplerate if info.frames > 0 else None
    return AudioInfo(str(path), int(info.samplerate), int(info.channels), duration, "soundfile")


def _pyav_info(path: Path) -> AudioInfo:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(path, "no audio stream in file")
            stream = container.streams.audio[0]
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            rate = stream.codec_context.sample_rate or stream.rate
            channels = stream.codec_context.channels
            if not rate:
                raise AudioError(path, "audio stream has no sample rate")
            return AudioInfo(str(path), int(rate), int(channels), duration, "pyav")
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(path, f"not a readable audio file ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    """One short line for an exception; FFmpeg errors keep their reason, not libav's raw errno."""
    strerror = getattr(exc, "strerror", None)
    text = str(strerror or exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def probe(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, channels and duration of ``path`` without decoding it. Raises `AudioError`."""
    p = Path(path)
    _check_path(p)
    return _soundfile_info(p) or _pyav_info(p)


def _blocks_soundfile(path: Path, start: int, stop: int | None) -> Iterator[np.ndarray]:
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        if start:
            f.seek(start)
        remaining = None if stop is None else max(stop - start, 0)
        while remaining is None or remaining > 0:
            n = BLOCK_FRAMES if remaining is None else min(BLOCK_FRAMES, remaining)
            block = f.read(n, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            if remaining is not None:
                remaining -= block.shape[0]
            yield block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]


def _blocks_pyav(path: Path, start: int, stop: int | None) -> Iterator[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        seen = 0
        for frame in container.decode(stream):
            arr = frame.to_ndarray()
            if arr.dtype.kind in "iu":
                scale = float(np.iinfo(arr.dtype).max) + 1.0
                arr = arr.astype(np.float32) / scale
            else:
                arr = arr.astype(np.float32, copy=False)
            channels = len(frame.layout.channels)
            if frame.format.is_planar:
                arr = arr.reshape(channels, -1)
            else:
                arr = arr.reshape(-1, channels).T
            mono = arr.mean(axis=0, dtype=np.float32) if channels > 1 else arr[0]
            lo, hi = seen, seen + mono.shape[0]
            seen = hi
            if hi <= start:
                continue
            if stop is not None and lo >= stop:
                break
            a = max(start - lo, 0)
            b = mono.shape[0] if stop is None else min(stop - lo, mono.shape[0])
            if b > a:
                yield np.ascontiguousarray(mono[a:b])


def iter_audio(
    path: str | os.PathLike,
    *,
    sr: int = 16000,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield the file as consecutive mono float32 blocks at ``sr`` Hz (each ≤ ~6 s of input).

    Only one block at the file rate is held at a time, so a 2-hour file costs a few MB here.
    ``offset_s``/``duration_s`` select an excerpt (in seconds of the original file).
    Raises `AudioError` naming the file when it is missing, empty, corrupt or not audio.
    """
    p = Path(path)
    info = probe(p)
    start = int(round(offset_s * info.samplerate))
    stop = None if duration_s is None else start + int(round(duration_s * info.samplerate))
    blocks = _blocks_soundfile(p, start, stop) if info.decoder == "soundfile" else _blocks_pyav(p, start, stop)
    resampler = None
    if info.samplerate != sr:
        import soxr

        resampler = soxr.ResampleStream(info.samplerate, sr, 1, dtype="float32", quality=RESAMPLE_QUALITY)
    n_out = 0
    n_in = 0
    try:
        for block in blocks:
            n_in += block.size
            if not np.all(np.isfinite(block)):
                block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
            out = block if resampler is None else resampler.resample_chunk(block, last=False)
            if out.size:
                n_out += out.size
                yield out
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if tail.size:
                n_out += tail.size
                yield tail
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(p, f"decoding failed ({_short(exc)})") from None
    if n_out == 0:
        raise AudioError(p, "no audio samples decoded (empty or truncated stream)")
    total = None if info.duration_s is None else int(info.duration_s * info.samplerate)
    expected = None if total is None else min(total, stop if stop is not None else total) - start
    if expected and expected - n_in > max(0.05 * expected, info.samplerate):
        log.warning("%s: decoded %.1f s of the %.1f s its header announces (truncated file?)",
                    p, n_in / info.samplerate, expected / info.samplerate)


def load(
    path: str | os.PathLike, *, sr: int = 16000, offset_s: float = 0.0, duration_s: float | None = None
) -> np.ndarray:
    """The whole file (or excerpt) as one ``(n_samples,) float32`` mono array at ``sr`` Hz."""
    return np.concatenate(list(iter_audio(path, sr=sr, offset_s=offset_s, duration_s=duration_s)))


def to_mono_resampled(y: np.ndarray, sr: int, *, target_sr: int = 16000) -> np.ndarray:
    """Downmix an in-memory signal and resample it to ``target_sr``.

    ``y``: ``(n,)`` mono or ``(n, channels)`` interleaved-style (soundfile layout) array; a
    ``(channels, n)`` array with channels ≤ 8 < n is accepted too (librosa layout).
    Returns ``(m,) float32``.
    """
    y = np.asarray(y)
    if y.ndim == 2:
        if y.shape[0] <= 8 < y.shape[1]:
            y = y.T
        y = y.mean(axis=1)
    elif y.ndim != 1:
        raise ValueError(f"audio must be 1-D or 2-D, given y.shape={y.shape}")
    if y.dtype.kind in "iu":
        y = y.astype(np.float32) / (float(np.iinfo(y.dtype).max) + 1.0)
    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.size == 0:
        raise ValueError("audio is empty, given y.shape=(0,)")
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, given sr={sr}")
    if sr != target_sr:
        import soxr

        y = soxr.resample(y, sr, target_sr, quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)
    return y
