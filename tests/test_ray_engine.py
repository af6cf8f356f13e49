"""The Ray engine (issue 14): `embed --engine ray` writes the same store as the local engine.

A local Ray cluster of 2 CPUs (started once for this module; the embedder pool then has one actor,
leaving a CPU for Ray Data's reads) embeds a few real fixture recordings plus one broken file. The store
must equal the local engine's: ids, paths, statuses, checksums and vectors bit for bit; the broken file
is recorded as failed. A worker killed mid-run is restarted by Ray and the run still completes; a driver
stopped mid-run leaves a store that a rerun completes without duplicates; a file that kills its worker
every time is recorded as failed, not retried forever.
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

import numpy as np
import pytest

from clirun import run

ray = pytest.importorskip("ray", reason="the Ray engine needs Ray Data: pip install 'embedkit[ray]' (make test installs it)")

from embedkit.collection import embed_into_store  # noqa: E402
from embedkit.engines import EngineUnavailableError, engine_for  # noqa: E402
from embedkit.engines.ray_engine import actor_pool_size  # noqa: E402
from embedkit.store import Store  # noqa: E402

#: real recordings from ../shared/data/fixtures/audio: 3-s clips (one patch) and a 30-s track (10 patches:
#: its mean vector differs in the last bits when an actor runs with other thread settings than the driver)
FILES = ["deb_asc-music__frontiers.ogg", "medleysolos_0_clarinet.wav", "medleysolos_4_piano.wav",
         "medleysolos_7_violin.wav"]
BROKEN = "zz_broken.wav"


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster with 2 CPUs for this module (shut down at its end)."""
    started = not ray.is_initialized()
    for attempt in range(3) if started else ():
        try:  # log_to_driver=False as embedkit's own start-up: worker lines on stdout would break --json
            ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
            break
        except Exception as exc:  # Ray gives the raylet a fixed 30 s to start; a loaded machine can miss it
            ray.shutdown()
            if attempt == 2 or "timed out during startup" not in str(exc):
                raise
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def music(tmp_path_factory, fixtures_dir) -> Path:
    """A folder of 4 real recordings and one file that is not audio."""
    d = tmp_path_factory.mktemp("ray_music")
    for name in FILES:
        shutil.copy(fixtures_dir / name, d / name)
    (d / BROKEN).write_bytes(b"RIFF\x00\x00\x00\x00WAVE this is not audio" * 10)
    return d


@pytest.fixture(scope="module")
def local_store(tmp_path_factory, music) -> Path:
    """The same folder embedded by the local engine (the reference)."""
    path = tmp_path_factory.mktemp("ray_ref") / "local"
    summary = embed_into_store([music], path, progress=False)
    assert summary["embedded"] == len(FILES) and summary["failed"] == 1
    return path


def snapshot(path: Path) -> tuple[list[tuple], np.ndarray]:
    """(id, file name, status, sha256, error) of every item, and the vectors of the embedded ones in id order."""
    with Store.open(path) as st:
        items = sorted(st.items(), key=lambda it: it.id)
        rows = [(it.id, Path(it.path).name, it.status, it.sha256, it.error) for it in items]
        vecs = np.asarray(st.vectors())[[it.row for it in items if it.status == "ok"]]
    return rows, vecs


def assert_same_store(a: Path, b: Path) -> None:
    ra, va = snapshot(a)
    rb, vb = snapshot(b)
    assert ra == rb  # same ids, paths, statuses, checksums, failure records
    assert len({r[1] for r in rb}) == len(rb)  # no duplicates
    assert va.dtype == vb.dtype == np.float32 and va.shape == vb.shape
    assert np.array_equal(va, vb)  # bit-identical vectors


def test_actor_pool_leaves_a_cpu_for_reads():
    assert [actor_pool_size(c) for c in (1, 2, 3, 16)] == [1, 1, 2, 15]


def test_without_ray_is_one_line_with_the_way_out(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(EngineUnavailableError) as exc:
        engine_for("ray")
    msg = str(exc.value)
    assert "\n" not in msg and "pip install 'embedkit[ray]'" in msg
    assert engine_for("local") is None


def test_engine_ray_needs_a_store(capsys, music):
    code, _, err = run(capsys, "embed", str(music / FILES[0]), "-o", "x.npz", "--engine", "ray")
    assert code == 2 and "--engine ray writes into a store" in err


def test_cli_ray_store_equals_local_engine(cluster, capsys, music, local_store, tmp_path, monkeypatch):
    """One run: the worker is killed mid-task after 2 files (test hook); Ray restarts it, the run completes."""
    store, marker = tmp_path / "ray", tmp_path / "killed"
    monkeypatch.setenv("EMBEDKIT_RAY_FAULT", json.dumps({"exit_after": 2, "marker": str(marker)}))
    code, out, err = run(capsys, "embed", str(music), "--store", str(store), "--engine", "ray", "--json")
    assert marker.exists()  # the worker process really died mid-run
    assert code == 3, err  # finished, one input failed
    summary = json.loads(out)
    assert summary["embedded"] == len(FILES) and summary["failed"] == 1
    assert summary["failures"][0]["path"].endswith(BROKEN) and BROKEN in summary["failures"][0]["error"]
    assert_same_store(local_store, store)
    # rerun: everything current or failed before; nothing is embedded again, the broken file is not retried
    code, out, _ = run(capsys, "embed", str(music), "--store", str(store), "--engine", "ray", "--json")
    again = json.loads(out)
    assert code == 0 and again["embedded"] == 0 and again["previously_failed"] == 1
    assert_same_store(local_store, store)


@pytest.mark.slow
def test_worker_killed_one_file_per_task(cluster, music, local_store, tmp_path):
    marker = tmp_path / "killed"
    engine = engine_for("ray", files_per_task=1, fault={"exit_after": 2, "marker": str(marker)})
    summary = embed_into_store([music], tmp_path / "ray", progress=False, engine=engine)
    assert marker.exists()  # the worker process really died after 2 files
    assert summary["embedded"] == len(FILES) and summary["failed"] == 1
    assert_same_store(local_store, tmp_path / "ray")


@pytest.mark.slow
def test_driver_stopped_mid_run_then_rerun(cluster, music, local_store, tmp_path):
    store = tmp_path / "ray"
    seen = []

    def stop_after_two(emb):
        inner = engine_for("ray", files_per_task=1)(emb)

        class Stopping:
            def __getattr__(self, name):
                return getattr(inner, name)

            def embed_files(self, paths, **kw):
                for res in inner.embed_files(paths, **kw):
                    seen.append(res.path)
                    if len(seen) > 2:
                        raise KeyboardInterrupt  # the driver dies with results in flight
                    yield res

        return Stopping()

    with pytest.raises(KeyboardInterrupt):
        embed_into_store([music], store, progress=False, engine=stop_after_two, commit_every=1)
    with Store.open(store) as st:
        kept = st.counts()
    assert kept["ok"] + kept["failed"] == 2  # what was stored before the stop is kept
    summary = embed_into_store([music], store, progress=False, engine=engine_for("ray"))
    assert summary["embedded"] + summary["failed"] == len(FILES) + 1 - 2
    assert_same_store(local_store, store)


@pytest.mark.slow
def test_driver_sigkilled_mid_run_then_rerun(music, local_store, tmp_path):
    """The driver process killed with SIGKILL (no cleanup at all) while Ray embeds; a rerun completes."""
    store = tmp_path / "ray"
    many = tmp_path / "many"
    many.mkdir()
    for name in FILES:  # more work than one commit interval
        for k in range(3):
            shutil.copy(music / name, many / f"{k}_{name}")
    cmd = [sys.executable, "-m", "embedkit.cli.main", "embed", str(many), "--store", str(store), "--engine", "ray"]
    env = dict(os.environ, EMBEDKIT_PROGRESS="0")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if (store / "manifest.json").exists():
            with Store.open(store) as st:
                if st.counts()["ok"] >= 1:
                    break
        time.sleep(0.5)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    code = subprocess.run(cmd + ["--wait", "30"], env=env, capture_output=True, text=True)
    assert code.returncode == 0, code.stderr
    with Store.open(store) as st:
        items = st.items()
        assert len(items) == len({it.path for it in items}) == 3 * len(FILES)  # complete, no duplicates
        by_name = {Path(it.path).name: st.vectors()[it.row] for it in items}
    with Store.open(local_store) as ref:
        ref_vec = {Path(it.path).name: ref.vectors()[it.row] for it in ref.items() if it.status == "ok"}
    for name, v in by_name.items():
        assert np.array_equal(v, ref_vec[name.split("_", 1)[1]])  # bit-identical to the local engine


@pytest.mark.slow
def test_file_that_kills_its_worker_is_recorded_failed(cluster, music, tmp_path):
    engine = engine_for("ray", fault={"crash_on": FILES[1]})
    summary = embed_into_store([music], tmp_path / "ray", progress=False, engine=engine)
    assert summary["embedded"] == len(FILES) - 1 and summary["failed"] == 2
    err = {Path(f["path"]).name: f["error"] for f in summary["failures"]}
    assert "worker died" in err[FILES[1]]
    again = embed_into_store([music], tmp_path / "ray", progress=False, engine=engine)
    assert again["embedded"] == 0 and again["previously_failed"] == 2  # not retried forever
