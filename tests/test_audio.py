"""Decoding and resampling: formats, rates, channels, and every kind of bad file."""
from __future__ import annotations

import numpy as np
import pytest

from embedkit import audio
from embedkit.errors import AudioError

from synth import tone


@pytest.mark.parametrize(
    "name,kw",
    [("a.wav", {}), ("a.flac", {}), ("a.ogg", {"format": "OGG", "subtype": "VORBIS"}),
     ("a.opus", {"format": "OGG", "subtype": "OPUS"}), ("a.mp3", {"format": "MP3", "subtype": "MPEG_LAYER_III"})],
)
def test_formats_decode_to_16k_mono(write_wav, name, kw):
    sr = 48000 if "opus" in name else 44100
    y = tone(1000, 2.0, sr)
    path = write_wav(name, np.stack([y, y], axis=1), sr, **kw)
    out = audio.load(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size - 32000) < 0.02 * 32000 + 2000  # codecs add priming samples
    spec = np.abs(np.fft.rfft(out[4000:20000]))
    assert abs(np.argmax(spec) * 16000 / 16000 - 1000) < 5  # the tone survives at 1 kHz


def test_m4a_aac_via_pyav(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "a.m4a"
    sr = 44100
    y = tone(500, 2.0, sr)
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=sr)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(y[None, :], format="flt", layout="mono")
        frame.sample_rate = sr
        for packet in s.encode(frame):
            c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    info = audio.probe(path)
    assert info.decoder == "pyav" and info.samplerate == sr
    out = audio.load(path)
    assert abs(out.size - 32000) < 4000
    assert abs(np.argmax(np.abs(np.fft.rfft(out[4000:20000]))) - 500) < 5


@pytest.mark.parametrize("sr", [8000, 22050, 48000])
def test_resampling_rates(write_wav, sr):
    path = write_wav(f"r{sr}.wav", tone(300, 3.0, sr), sr)
    out = audio.load(path)
    assert abs(out.size - 48000) <= 2
    assert abs(np.argmax(np.abs(np.fft.rfft(out[:32000]))) / 2 - 300) < 2


def test_stereo_is_averaged_before_resampling(write_wav):
    left = tone(440, 1.0, 16000)
    path = write_wav("st.wav", np.stack([left, -left], axis=1), 16000, subtype="FLOAT")
    assert np.abs(audio.load(path)).max() < 1e-6  # opposite channels cancel


def test_long_file_streams_in_bounded_blocks(write_wav):
    sr = 44100
    path = write_wav("long.flac", np.zeros(sr * 60, np.float32), sr)  # 60 s
    sizes = [b.size for b in audio.iter_audio(path)]
    assert sum(sizes) == pytest.approx(60 * 16000, abs=2)
    assert max(sizes) <= audio.BLOCK_FRAMES * 16000 / sr + 1024
    assert len(sizes) > 3


def test_excerpt_offsets(write_wav):
    y = np.concatenate([np.zeros(16000), np.ones(16000) * 0.5, np.zeros(16000)]).astype(np.float32)
    path = write_wav("ex.wav", y, 16000, subtype="FLOAT")
    out = audio.load(path, offset_s=1.0, duration_s=1.0)
    assert out.size == 16000 and np.allclose(out, 0.5)


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("this is not audio, just text\n" * 20), "not a readable audio file"),
        (lambda p: None, "no such file"),
    ],
    ids=["empty", "text-named-mp3", "missing"],
)
def test_bad_files_give_one_line_error_naming_the_file(tmp_path, make, needle):
    path = tmp_path / "bad.mp3"
    make(path)
    with pytest.raises(AudioError) as err:
        audio.load(path)
    msg = str(err.value)
    assert str(path) in msg and needle in msg and "\n" not in msg


def test_truncated_file(write_wav, tmp_path):
    good = write_wav("t.ogg", tone(440, 5.0, 44100), 44100, format="OGG", subtype="VORBIS")
    cut = tmp_path / "truncated.ogg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    try:
        out = audio.load(cut)  # libsndfile may decode what is there
        assert 0 < out.size < 5 * 16000
    except AudioError as exc:
        assert str(cut) in str(exc)
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(write_wav("h.wav", tone(440, 1.0)).read_bytes()[:30])
    with pytest.raises(AudioError, match="header.wav"):
        audio.load(header_only)


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match="directory"):
        audio.load(tmp_path)


def test_zero_length_wav(write_wav):
    path = write_wav("zero.wav", np.zeros(0, np.float32))
    with pytest.raises(AudioError, match="zero.wav"):
        audio.load(path)


def test_in_memory_downmix_and_resample():
    y = np.stack([tone(440, 1.0, 44100)] * 2)  # (channels, n) librosa layout
    out = audio.to_mono_resampled(y, 44100)
    assert out.shape == (16000,) and out.dtype == np.float32
    with pytest.raises(ValueError, match=r"y.shape=\(0,\)"):
        audio.to_mono_resampled(np.zeros(0), 16000)


def test_real_fixtures_decode(fixtures_dir):
    files = sorted(fixtures_dir.glob("*"))[:3] + sorted(fixtures_dir.glob("medley*"))[:1]
    for f in files:
        info = audio.probe(f)
        y = audio.load(f, duration_s=2.0)
        assert abs(y.size - 32000) <= 2 and np.isfinite(y).all() and info.samplerate in (22050, 44100, 48000)


def test_truncated_mp3_is_decoded_with_a_warning_naming_the_file(write_wav, tmp_path, caplog):
    good = write_wav("t.mp3", tone(440, 10.0, 44100), 44100, format="MP3")
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with caplog.at_level("WARNING", logger="embedkit"):
        y = audio.load(cut)
    assert 3 * 16000 < y.size < 7 * 16000
    assert any("cut.mp3" in r.getMessage() and "truncated" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="embedkit"):
        audio.load(good)
    assert not caplog.records


def test_excerpt_longer_than_the_file_gives_no_truncation_warning(write_wav, caplog):
    path = write_wav("short.mp3", tone(440, 4.0, 44100), 44100, format="MP3")
    with caplog.at_level("WARNING", logger="embedkit"):
        y = audio.load(path, offset_s=0.0, duration_s=30.0)
    assert y.size > 3 * 16000 and not caplog.records


# ---- issue 9: non-finite and absurd samples, FIFOs, libmpg123 noise ------------------------------------


@pytest.mark.parametrize("value, needle", [(np.nan, "NaN sample"), (np.inf, "infinite sample"),
                                           (-np.inf, "infinite sample"), (1e30, "out of range")])
def test_float_wav_with_nonfinite_or_absurd_samples_is_a_failed_file(write_wav, value, needle):
    """A float WAV with NaN/inf samples, or samples near 1e30 (log-mel overflow), fails with its reason."""
    y = tone(440, 4.0).astype(np.float32)
    y[20000:20010] = value
    path = write_wav("weird.wav", y, subtype="FLOAT")
    with pytest.raises(AudioError) as err:
        audio.load(path)
    msg = str(err.value)
    assert str(path) in msg and needle in msg and "1.25 s" in msg and "\n" not in msg


def test_all_nan_file_is_not_the_silence_vector(write_wav):
    path = write_wav("nan.wav", np.full(48000, np.nan, np.float32), subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN sample"):
        audio.load(path)


def test_loud_but_sane_float_audio_still_decodes(write_wav):
    path = write_wav("hot.wav", 10.0 * tone(440, 4.0).astype(np.float32), subtype="FLOAT")  # peaks at 3: over full scale
    assert np.abs(audio.load(path)).max() > 2.5


def test_fifo_is_named_as_such_and_never_read(tmp_path):
    import os

    fifo = tmp_path / "pipe.mp3"
    os.mkfifo(fifo)
    with pytest.raises(AudioError, match="FIFO") as err:  # would block forever if it were opened
        audio.probe(fifo)
    assert "empty file" not in str(err.value)


def test_libmpg123_noise_goes_to_the_log_not_to_stderr(write_wav, tmp_path, capfd, caplog):
    good = write_wav("t.mp3", tone(440, 5.0, 16000), 16000, format="MP3")
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.integers(2000, len(data), 300):  # keep the first frames: libsndfile (not FFmpeg) decodes it
        data[i] = int(rng.integers(0, 256))
    bad = tmp_path / "damaged.mp3"
    assert audio.probe(bad if bad.write_bytes(bytes(data)) else bad).decoder == "soundfile"
    bad.write_bytes(bytes(data))
    with caplog.at_level("DEBUG", logger="embedkit"):
        try:
            audio.load(bad)
        except AudioError:
            pass
    err = capfd.readouterr().err
    assert "mpg123" not in err and "Illegal Audio-MPEG-Header" not in err and "resync" not in err, err
    assert any("libmpg123" in r.getMessage() and "damaged.mp3" in r.getMessage() for r in caplog.records)


def test_fd2_is_restored_and_other_output_kept(write_wav, capfd):
    import os

    path = write_wav("ok.mp3", tone(440, 4.0, 16000), 16000, format="MP3")
    with audio._route_fd2_to_log(path):
        os.write(2, b"someone else's line\n")
    audio.load(path)
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "someone else's line" in err and err.rstrip().endswith("after")
