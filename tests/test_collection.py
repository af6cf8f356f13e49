"""Tests of embedkit.collection (embed DIR --store): broken files, resume, moves, locks, kills, CLI.

Most tests use a tiny deterministic fake embedder (tests/_fake_embedder.py) on synthesized audio so
that the pipeline logic runs in seconds; the tests marked "real" run the msd_vgg Embedder on real
fixture music to show that stored vectors equal the single-file API and survive SIGKILL bit for bit.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np
import pytest
import soundfile as sf

from _fake_embedder import FakeEmbedder
from embedkit.collection import embed_into_store, format_summary
from embedkit.errors import EmbedkitError
from embedkit.store import Store, StoreLockedError, StoreMismatchError

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def _wav(path: Path, seconds: float, seed: int, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    y = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr)).astype(np.float32)
    sf.write(path, y, sr)
    return path


def _broken(folder: Path, fixture_ogg: Path | None = None) -> dict[str, str]:
    """Broken files of every kind; returns name -> expected fragment of the error."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.ogg").write_bytes(b"")
    (folder / "text.ogg").write_text("this is a text file, renamed\n" * 20)
    sf.write(folder / "zero.wav", np.zeros(0, np.float32), 16000)
    src = fixture_ogg.read_bytes() if fixture_ogg else (folder / "text.ogg").read_bytes()
    (folder / "truncated.ogg").write_bytes(src[:150])  # cut inside the Ogg/Vorbis headers
    return {
        "empty.ogg": "empty file (0 bytes)",
        "text.ogg": "not a readable audio file",
        "zero.wav": "no audio samples decoded",
        "truncated.ogg": "",
    }


@pytest.fixture()
def lib(tmp_path):
    root = tmp_path / "lib"
    for i in range(4):
        _wav(root / f"s{i}.wav", 1.5 + 2.5 * i, seed=i)
    _wav(root / "sub" / "deep.wav", 4.0, seed=10, sr=22050)
    (root / "cover.jpg").write_bytes(b"\xff\xd8")
    return root


def _vectors_by_path(store: Path) -> dict[str, np.ndarray]:
    with Store.open(store) as st:
        ids = st.ids()
        return {st.get(int(i)).path: v for i, v in zip(ids, st.vectors(ids))}


def test_good_files_embedded_bad_ones_recorded(lib, tmp_path):
    expected = _broken(lib / "bad")
    s = embed_into_store([lib], tmp_path / "st", embedder=FakeEmbedder(), progress=False)
    assert s["found"] == 9 and s["embedded"] == 5 and s["failed"] == 4
    assert s["ignored"] == {"not audio": 1}
    with Store.open(tmp_path / "st") as st:
        assert len(st) == 5
        failed = {Path(it.path).name: it.error for it in st.items("failed")}
    assert set(failed) == set(expected)
    for name, fragment in expected.items():
        assert failed[name].startswith(str(lib / "bad" / name) + ": ") and fragment in failed[name]
        assert "\n" not in failed[name]
    assert {Path(f["path"]).name for f in s["failures"]} == set(expected)
    text = format_summary(s)
    assert "5 embedded" in text and "4 failed" in text and "empty file (0 bytes)" in text


def test_stored_vectors_equal_single_file_api_fake(lib, tmp_path):
    emb = FakeEmbedder()
    embed_into_store([lib], tmp_path / "st", embedder=emb, progress=False)
    got = _vectors_by_path(tmp_path / "st")
    assert len(got) == 5
    for path, v in got.items():
        np.testing.assert_array_equal(v, emb.embed_file(path).vector)


def test_rerun_skips_without_model_then_embeds_only_new_and_changed(lib, tmp_path):
    emb = FakeEmbedder()
    first = embed_into_store([lib], tmp_path / "st", embedder=emb, progress=False)
    ids_before = {it.path: it.id for it in Store.open(tmp_path / "st").items()}
    # embedder=None: the model 'fake' cannot be loaded, so this proves a no-op rerun never loads it
    again = embed_into_store([lib], tmp_path / "st", progress=False)
    assert again["embedded"] == 0 and again["skipped"] == first["embedded"] == 5 and again["unchanged"] == 5
    _wav(lib / "new.wav", 3.0, seed=99)
    _wav(lib / "s1.wav", 6.0, seed=123)  # changed content (size differs)
    os.utime(lib / "s2.wav", ns=(0, 1_000_000_000))  # touched: mtime differs, same bytes
    emb2 = FakeEmbedder()
    s = embed_into_store([lib], tmp_path / "st", embedder=emb2, progress=False)
    assert emb2.calls == 2 and s["embedded"] == 2 and s["unchanged"] == 4
    with Store.open(tmp_path / "st") as st:
        assert len(st) == 6 and len(st.items()) == 6  # no duplicates
        assert st.get(str(lib / "s1.wav")).id == ids_before[str(lib / "s1.wav")]
        np.testing.assert_array_equal(
            st.vectors([st.get(str(lib / "s1.wav")).id])[0], emb.embed_file(lib / "s1.wav").vector
        )
        assert st.get(str(lib / "s2.wav")).mtime == 1.0


def test_retry_failed(lib, tmp_path):
    bad = lib / "later.wav"
    bad.write_text("not yet audio")
    s = embed_into_store([lib], tmp_path / "st", embedder=FakeEmbedder(), progress=False)
    assert s["failed"] == 1
    emb = FakeEmbedder()
    s = embed_into_store([lib], tmp_path / "st", embedder=emb, progress=False)
    assert emb.calls == 0 and s["failed"] == 0 and s["previously_failed"] == 1
    assert "not retried (use --retry-failed)" in format_summary(s)
    s = embed_into_store([lib], tmp_path / "st", embedder=emb, progress=False, retry_failed=True)
    assert emb.calls == 1 and s["failed"] == 1  # still broken: tried again, failed again
    _wav(bad, 2.0, seed=7)  # fixed (new size/mtime): retried without the flag
    s = embed_into_store([lib], tmp_path / "st", embedder=emb, progress=False)
    assert s["embedded"] == 1 and s["failed"] == 0
    with Store.open(tmp_path / "st") as st:
        assert st.counts() == {"ok": 6, "failed": 0, "missing": 0}


def test_moved_and_copied_files_recognised_by_hash(lib, tmp_path):
    embed_into_store([lib], tmp_path / "st", embedder=FakeEmbedder(), progress=False)
    before = _vectors_by_path(tmp_path / "st")
    old_id = Store.open(tmp_path / "st").get(str(lib / "s3.wav")).id
    (lib / "moved").mkdir()
    shutil.move(lib / "s3.wav", lib / "moved" / "renamed.wav")
    shutil.copy(lib / "s0.wav", lib / "copy_of_s0.wav")
    emb = FakeEmbedder()
    s = embed_into_store([lib], tmp_path / "st", embedder=emb, progress=False)
    assert emb.calls == 0 and s["moved"] == 1 and s["copies"] == 1 and s["embedded"] == 0
    after = _vectors_by_path(tmp_path / "st")
    assert str(lib / "s3.wav") not in after and len(after) == 6
    np.testing.assert_array_equal(after[str(lib / "moved" / "renamed.wav")], before[str(lib / "s3.wav")])
    np.testing.assert_array_equal(after[str(lib / "copy_of_s0.wav")], before[str(lib / "s0.wav")])
    with Store.open(tmp_path / "st") as st:
        assert st.get(str(lib / "moved" / "renamed.wav")).id == old_id


def test_prune_marks_vanished_and_rerun_restores(lib, tmp_path):
    from embedkit.collection import prune

    embed_into_store([lib], tmp_path / "st", embedder=FakeEmbedder(), progress=False)
    keep = lib.parent / "elsewhere.wav"
    shutil.move(lib / "s1.wav", keep)
    with Store.open(tmp_path / "st", mode="a") as st:
        out = prune(st, dry_run=True)
        assert out["missing"] == [str(lib / "s1.wav")] and len(st) == 5
        prune(st)
        assert len(st) == 4 and st.get(str(lib / "s1.wav")).status == "missing"
    shutil.move(keep, lib / "s1.wav")  # back, unchanged (same size and mtime)
    emb = FakeEmbedder()
    s = embed_into_store([lib], tmp_path / "st", embedder=emb, progress=False)
    assert s["restored"] == 1 and emb.calls == 0
    with Store.open(tmp_path / "st", mode="a") as st:
        assert len(st) == 5
        (lib / "s0.wav").unlink()
        out = prune(st, delete=True)
        assert out["deleted"] == [str(lib / "s0.wav")] and st.get(str(lib / "s0.wav")) is None


def test_fingerprint_and_settings_mismatch_refused(lib, tmp_path):
    emb = FakeEmbedder()
    embed_into_store([lib], tmp_path / "st", embedder=emb, progress=False)
    other = FakeEmbedder(salt="other preprocessing")
    _wav(lib / "new.wav", 2.0, seed=5)  # something to do, so the check cannot be skipped
    with pytest.raises(StoreMismatchError) as ei:
        embed_into_store([lib], tmp_path / "st", embedder=other, progress=False)
    msg = str(ei.value)
    assert emb.fingerprint[:16] in msg and other.fingerprint[:16] in msg and "\n" not in msg
    with pytest.raises(StoreMismatchError, match="layers=all .*layers=pool5 .*layers pool1,pool2,pool3,pool4,pool5 ≠ pool5"):
        embed_into_store([lib], tmp_path / "st", embedder=emb, layers="pool5", progress=False)
    with pytest.raises(StoreMismatchError):
        embed_into_store([lib], tmp_path / "st", embedder=emb, excerpt_s=30, progress=False)
    with Store.open(tmp_path / "st") as st:
        assert st.get(str(lib / "new.wav")) is None  # nothing written by the refused runs
    # the store's own settings are reused when none are given
    s = embed_into_store([lib], tmp_path / "st", embedder=emb, layers="1,2,3,4,5", progress=False)
    assert s["embedded"] == 1


def test_settings_patches_tags_excerpt(lib, tmp_path):
    emb = FakeEmbedder()
    s = embed_into_store([lib], tmp_path / "st", embedder=emb, layers="2,pool5", aggregate="mean+std",
                         excerpt_s=3.5, patches=True, tags=True, progress=False)
    assert s["layers"] == ["pool2", "pool5"] and s["excerpt_s"] == 3.5
    with Store.open(tmp_path / "st") as st:
        assert st.dim == 16 and st.manifest["patch_dim"] == 8 and st.has_tags and st.tag_labels == emb.labels
        assert [b["name"] for b in st.layout] == ["pool2", "pool5", "pool2_std", "pool5_std"]
        path = str(lib / "s3.wav")
        ref = emb.embed_file(path, layers="2,pool5", aggregate="mean+std", excerpt_s=3.5, return_patches=True)
        item = st.get(path)
        np.testing.assert_array_equal(st.vectors([item.id])[0], ref.vector)
        np.testing.assert_array_equal(st.tags([item.id])[0], ref.tags)
        item_ids, starts, pv = st.patch_vectors([item.id])
        np.testing.assert_array_equal(pv, ref.patch_vectors)
        np.testing.assert_array_equal(starts, ref.patch_start_s)
        assert item.duration_s == pytest.approx(9.0, abs=0.01)  # the file's duration, not the excerpt's
    assert s["audio_hours"] * 3600 == pytest.approx(1.5 + 4 + 6.5 + 9 + 4, abs=0.01)
    assert s["decoded_hours"] * 3600 == pytest.approx(1.5 + 3.5 * 4, abs=0.01)
    with pytest.raises(EmbedkitError, match="created without --patches"):
        embed_into_store([lib], tmp_path / "plain", embedder=emb, progress=False)
        embed_into_store([lib], tmp_path / "plain", embedder=emb, patches=True, progress=False)


def test_no_audio_found_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmbedkitError, match="no audio files found"):
        embed_into_store([tmp_path / "empty"], tmp_path / "st", embedder=FakeEmbedder(), progress=False)
    assert not (tmp_path / "st").exists()


# ---- processes: unreadable files, concurrent writers, SIGKILL ---------------------------------------

_RUN = """
import sys, json, time
sys.path.insert(0, {tests!r})
from _fake_embedder import FakeEmbedder
from embedkit.collection import embed_into_store
s = embed_into_store([{lib!r}], {store!r}, embedder=FakeEmbedder(delay_s={delay}), progress=False,
                     commit_every={commit_every}, wait={wait})
print(json.dumps({{k: s[k] for k in ("embedded", "failed", "skipped")}}), flush=True)
"""


def _script(lib: Path, store: Path, *, delay: float = 0.0, commit_every: int = 64, wait: float = 0.0) -> str:
    return _RUN.format(tests=str(REPO / "tests"), lib=str(lib), store=str(store), delay=delay,
                       commit_every=commit_every, wait=wait)


def _without_root_file_access() -> list[str]:
    """Command prefix under which permission bits apply (as root: drop CAP_DAC_* with setpriv), or skip."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root (permission bits do not apply) and setpriv is not installed to drop CAP_DAC_OVERRIDE")
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE here: {probe.stderr.strip()}")
    return prefix


def test_unreadable_file_recorded(tmp_path):
    """Permission bits do not stop root, so as root the run drops the capabilities that bypass them."""
    prefix = _without_root_file_access()
    lib = tmp_path / "lib"
    _wav(lib / "ok.wav", 2.0, seed=1)
    _wav(lib / "secret.wav", 2.0, seed=2)
    os.chmod(lib / "secret.wav", 0)
    try:
        r = subprocess.run([*prefix, PY, "-c", _script(lib, tmp_path / "st")], capture_output=True, text=True, timeout=120)
    finally:
        os.chmod(lib / "secret.wav", 0o644)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"embedded": 1, "failed": 1, "skipped": 0}
    with Store.open(tmp_path / "st") as st:
        (failed,) = st.items("failed")
    assert failed.path == str(lib / "secret.wav")
    assert failed.error.startswith(str(lib / "secret.wav") + ": ") and "permission denied" in failed.error.lower()


def test_two_concurrent_writers(lib, tmp_path):
    for i in range(6):
        _wav(lib / "more" / f"m{i}.wav", 2.0, seed=50 + i)
    store = tmp_path / "st"
    a = subprocess.Popen([PY, "-c", _script(lib, store, delay=0.3, commit_every=1)], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # wait until A holds the store and has committed something
            if (store / "manifest.json").exists():
                with Store.open(store) as st:
                    if len(st) >= 1:
                        break
            time.sleep(0.05)
        else:
            pytest.fail("first writer did not start")
        with pytest.raises(StoreLockedError, match=r"being written by another process \(pid \d+\); use --wait"):
            embed_into_store([lib], store, embedder=FakeEmbedder(), progress=False)
        b = subprocess.run([PY, "-c", _script(lib, store, wait=60)], capture_output=True, text=True, timeout=120)
        out_a = json.loads(a.communicate(timeout=120)[0])
    finally:
        if a.poll() is None:
            a.kill()
    out_b = json.loads(b.stdout)
    assert out_a["embedded"] == 11 and out_b == {"embedded": 0, "failed": 0, "skipped": 11}
    with Store.open(store) as st:
        items = st.items()
        assert len(items) == 11 and len({it.path for it in items}) == 11
        assert sorted(it.row for it in items) == list(range(11))  # one vector per file, no interleaving


def test_sigkill_midway_then_rerun_is_identical_fake(lib, tmp_path):
    for i in range(8):
        _wav(lib / "more" / f"m{i}.wav", 1.0 + i, seed=70 + i)
    embed_into_store([lib], tmp_path / "whole", embedder=FakeEmbedder(), progress=False)
    store = tmp_path / "st"
    proc = subprocess.Popen([PY, "-c", _script(lib, store, delay=0.15, commit_every=2)])
    deadline = time.time() + 60
    while time.time() < deadline:
        if (store / "manifest.json").exists():
            with Store.open(store) as st:
                if len(st) >= 4:
                    break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Store.open(store) as st:
        n_killed = len(st)
    assert 4 <= n_killed < 13
    emb = FakeEmbedder()
    s = embed_into_store([lib], store, embedder=emb, progress=False)
    assert s["unchanged"] == n_killed and emb.calls == 13 - n_killed
    whole, resumed = _vectors_by_path(tmp_path / "whole"), _vectors_by_path(store)
    assert sorted(whole) == sorted(resumed)
    for p in whole:
        np.testing.assert_array_equal(whole[p], resumed[p])
    with Store.open(store) as st:
        assert len(st.items()) == 13


# ---- CLI -------------------------------------------------------------------------------------------


def _embed_command():
    """A stand-in for the lead's `embed` command, wired as documented in cli/embed_store_options.py."""
    from embedkit.cli._common import aggregate_option, layers_option, model_option
    from embedkit.cli.embed_store_options import run_store_embed, store_options

    @click.command("embed")
    @store_options
    @click.argument("inputs", nargs=-1, type=click.Path())
    @model_option
    @layers_option
    @aggregate_option
    @click.pass_context
    def embed(ctx, inputs, **params):
        return run_store_embed(ctx, inputs, **params)

    return embed


def _invoke(args, monkeypatch, capsys):
    from embedkit.cli._common import run_guarded

    monkeypatch.setattr("embedkit.collection._load", lambda *a, **k: FakeEmbedder())
    group = click.Group("embedkit", commands={"embed": _embed_command()})
    capsys.readouterr()
    rc = run_guarded(group, args)
    return rc, capsys.readouterr().out


def test_cli_exit_code_3_and_json_summary(lib, tmp_path, monkeypatch, capsys):
    _broken(lib / "bad")
    rc, out = _invoke(["embed", str(lib), "--store", str(tmp_path / "st"), "--json"], monkeypatch, capsys)
    assert rc == 3
    summary = json.loads(out[: out.rindex("}") + 1])
    assert summary["embedded"] == 5 and summary["failed"] == 4
    assert {"found", "skipped", "failures", "audio_hours", "x_realtime", "settings_fingerprint"} <= set(summary)
    rc, out = _invoke(["embed", str(lib), "--store", str(tmp_path / "st")], monkeypatch, capsys)
    assert rc == 0 and "0 embedded, 5 skipped" in out and "--retry-failed" in out
    lst = tmp_path / "list.txt"
    lst.write_text(f"{lib / 's0.wav'}\n")
    rc, out = _invoke(["embed", "--from-list", str(lst), "--store", str(tmp_path / "st2"), "--layers", "5", "--json"],
                      monkeypatch, capsys)
    assert rc == 0 and json.loads(out)["embedded"] == 1 and json.loads(out)["layers"] == ["pool5"]
    rc, out = _invoke(["embed", "--store", str(tmp_path / "st3")], monkeypatch, capsys)
    assert rc == 2


def test_store_cli_info_ls_export_prune(lib, tmp_path, capsys):
    from embedkit.cli._common import run_guarded
    from embedkit.cli.main import cli

    _broken(lib / "bad")
    embed_into_store([lib], tmp_path / "st", embedder=FakeEmbedder(), tags=True, patches=True, progress=False)
    st_path = str(tmp_path / "st")

    def run(*args):
        capsys.readouterr()
        rc = run_guarded(cli, list(args))
        return rc, capsys.readouterr().out

    rc, out = run("store", "info", st_path)
    assert rc == 0 and "5 embedded, 4 failed, 0 missing" in out and "empty file (0 bytes)" in out
    rc, out = run("store", "info", st_path, "--json")
    info = json.loads(out)
    assert info["dim"] == 20 and info["embedded"] == 5 and len(info["failures"]) == 4 and info["tags"]
    rc, out = run("store", "ls", st_path, "--status", "failed")
    assert rc == 0 and len(out.strip().splitlines()) == 4
    with Store.open(st_path) as st:
        ids, vecs, tags = st.ids(), st.vectors(), st.tags()
        paths = [st.get(int(i)).path for i in ids]
    rc, _ = run("store", "export", st_path, "--format", "npz", "-o", str(tmp_path / "x.npz"), "--patches")
    z = np.load(tmp_path / "x.npz")
    assert rc == 0 and np.array_equal(z["ids"], ids) and np.array_equal(z["vectors"], vecs)
    assert list(z["paths"]) == paths and np.array_equal(z["tags"], tags)
    assert json.loads(str(z["manifest_json"]))["dim"] == 20 and z["patch_vectors"].shape[1] == 20
    rc, _ = run("store", "export", st_path, "--format", "csv", "-o", str(tmp_path / "x.csv"))
    import csv

    rows = list(csv.reader(open(tmp_path / "x.csv")))
    assert rows[0][:5] == ["id", "path", "duration_s", "samplerate", "pool1_0"] and len(rows) == 6
    np.testing.assert_array_equal(np.array(rows[1][4:24], dtype=np.float32), vecs[0])
    pq = pytest.importorskip("pyarrow.parquet")
    rc, _ = run("store", "export", st_path, "--format", "parquet", "-o", str(tmp_path / "x.parquet"))
    t = pq.read_table(tmp_path / "x.parquet")
    assert rc == 0 and np.array_equal(np.stack(t.column("vector").to_numpy(zero_copy_only=False)), vecs)
    (lib / "s0.wav").unlink()
    rc, out = run("store", "prune", st_path, "--json")
    assert rc == 0 and json.loads(out)["missing"] == [str(lib / "s0.wav")]
    rc, out = run("store", "info", "/nonexistent/store")
    assert rc == 1


# ---- real model on real music ----------------------------------------------------------------------

REAL = ["medleysolos_0_clarinet.wav", "medleysolos_4_piano.wav", "librosa_sorohanro_-_solo-trumpet-06.ogg",
        "deb_nexuiz-music__brainsukker.ogg"]
LONG = "librosa_Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg"


@pytest.fixture()
def real_lib(fixtures_dir, tmp_path):
    lib = tmp_path / "real"
    lib.mkdir()
    for name in REAL:
        os.symlink(fixtures_dir / name, lib / name)
    return lib


def test_real_store_equals_single_file_api_and_broken_files(real_lib, fixtures_dir, embedder, tmp_path):
    _broken(real_lib / "bad", fixtures_dir / REAL[-1])
    s = embed_into_store([real_lib], tmp_path / "st", embedder=embedder, workers=2, tags=True, progress=False)
    assert s["embedded"] == len(REAL) and s["failed"] == 4
    from embedkit import pretrained

    assert pretrained.model_fingerprint("msd_vgg") == embedder.fingerprint  # the no-TensorFlow check agrees
    with Store.open(tmp_path / "st") as st:
        assert st.model_fingerprint == embedder.fingerprint and st.dim == 640
        for it in st.items("ok"):
            ref = embedder.embed_file(it.path)
            np.testing.assert_array_equal(st.vectors([it.id])[0], ref.vector)
            np.testing.assert_array_equal(st.tags([it.id])[0], ref.tags)
            assert it.duration_s == pytest.approx(ref.duration_s)


_REAL_RUN = """
import sys
from embedkit import Embedder
from embedkit.collection import embed_into_store
emb = Embedder.from_pretrained("msd_vgg", batch_size=32)
print("loaded", flush=True)
embed_into_store([{lib!r}], {store!r}, embedder=emb, progress=False, commit_every=1, workers=1)
"""


def test_real_sigkill_midway_then_rerun_bit_identical(real_lib, fixtures_dir, embedder, tmp_path):
    # a 2-minute file sorted last: the short ones are committed one by one, the kill lands during it
    os.symlink(fixtures_dir / LONG, real_lib / f"zz_{LONG}")
    n_files = len(REAL) + 1
    whole = tmp_path / "whole"
    embed_into_store([real_lib], whole, embedder=embedder, progress=False)
    store = tmp_path / "st"
    proc = subprocess.Popen([PY, "-c", _REAL_RUN.format(lib=str(real_lib), store=str(store))], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"loaded"
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (store / "manifest.json").exists():
                with Store.open(store) as st:
                    if len(st) >= 1:
                        break
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with Store.open(store) as st:
        n_killed = len(st)
    assert 1 <= n_killed < n_files  # killed mid-way
    s = embed_into_store([real_lib], store, embedder=embedder, progress=False)
    assert s["unchanged"] == n_killed and s["embedded"] == n_files - n_killed
    a, b = _vectors_by_path(whole), _vectors_by_path(store)
    assert sorted(a) == sorted(b)
    for p in a:
        np.testing.assert_array_equal(a[p], b[p])
    with Store.open(store) as st:
        assert len(st.items()) == n_files

