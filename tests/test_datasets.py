"""Dataset readers, each on a tiny tree in the dataset's real layout with synthesized audio."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from embedkit.datasets import DatasetError, read
from embedkit.labels import read_labels
from clirun import run

FORMATS = {".au": ("AU", "PCM_16"), ".wav": ("WAV", "PCM_16"), ".mp3": ("MP3", None), ".ogg": ("OGG", "VORBIS")}


def audio(path: Path, seconds: float = 0.5, freq: float = 440.0, sr: int = 22050) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    y = (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    fmt, sub = FORMATS[path.suffix]
    sf.write(path, y, sr, format=fmt, subtype=sub)
    return path


def text(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def labels_of(d) -> dict[str, object]:
    return {Path(r["path"]).name: r.get("label", r.get("labels")) for r in d.rows}


def test_gtzan_genre_original_and_kaggle_layouts(tmp_path):
    for g in ("blues", "rock"):
        for i in range(2):
            audio(tmp_path / "gtzan" / "genres" / g / f"{g}.{i:05d}.au")
    d = read("gtzan", tmp_path / "gtzan")
    assert d.task == "classification" and len(d) == 4
    assert labels_of(d) == {"blues.00000.au": "blues", "blues.00001.au": "blues", "rock.00000.au": "rock", "rock.00001.au": "rock"}
    assert all(Path(r["path"]).is_absolute() and Path(r["path"]).exists() for r in d.rows)
    assert any("without files" in n for n in d.notes)
    audio(tmp_path / "kaggle" / "Data" / "genres_original" / "jazz" / "jazz.00054.wav")
    assert labels_of(read("gtzan", tmp_path / "kaggle")) == {"jazz.00054.wav": "jazz"}
    with pytest.raises(DatasetError, match="no GTZAN genre layout .*genres/<genre>"):
        read("gtzan", tmp_path / "kaggle" / "Data" / "genres_original" / "jazz")


def test_gtzan_music_speech(tmp_path):
    audio(tmp_path / "music_speech" / "music_wav" / "bagpipe.wav")
    audio(tmp_path / "music_speech" / "speech_wav" / "comedy.wav")
    text(tmp_path / "music_speech" / "music_speech.mf", "x\n")
    d = read("gtzan-music-speech", tmp_path)
    assert labels_of(d) == {"bagpipe.wav": "music", "comedy.wav": "speech"}


def test_ballroom_merges_rumbas(tmp_path):
    base = tmp_path / "BallroomData"
    audio(base / "ChaChaCha" / "Albums-Cafe_Paradiso-05.wav")
    audio(base / "Rumba-American" / "Media-103402.wav")
    audio(base / "Rumba-International" / "Albums-Ballroom_Magic-03.wav")
    audio(base / "Viennese waltz" / "Albums-Ballroom_Classics4-11.wav")
    audio(base / "nada" / "x.wav")
    d = read("ballroom", tmp_path)
    assert labels_of(d) == {"Albums-Cafe_Paradiso-05.wav": "ChaChaCha", "Media-103402.wav": "Rumba",
                            "Albums-Ballroom_Magic-03.wav": "Rumba", "Albums-Ballroom_Classics4-11.wav": "VienneseWaltz"}
    assert any("nada" in n for n in d.notes)


def test_extended_ballroom(tmp_path):
    base = tmp_path / "extendedballroom_v1.1"
    audio(base / "Chacha" / "100701.mp3")
    audio(base / "Wcswing" / "100845.mp3")
    d = read("extended-ballroom", tmp_path)
    assert labels_of(d) == {"100701.mp3": "Chacha", "100845.mp3": "Wcswing"}


def test_emomusic(tmp_path):
    root = tmp_path / "emoMusic"
    text(root / "static_annotations.csv",
         "song_id,mean_arousal,std_arousal,mean_valence,std_valence\n2,3.1,0.94,3,0.63\n3,4.5,1.2,3.3,0.8\n5,6,1,6.2,1\n")
    text(root / "songs_info.csv",
         'song_id,file_name,Artist,Song title,start of the segment (min.sec),end of the segment (min.sec),Genre,Mediaeval 2013 set\n'
         '2,2.mp3,\tDef Leppard ,Pour Some Sugar,0.41,1.26,Rock,development\n'
         '3,3.mp3,Def Leppard,Hysteria,1.00,1.45,Rock,evaluation\n'
         '5,5.mp3,Someone Else,Song,0.30,1.15,Pop,development\n')
    audio(root / "clips_45seconds" / "2.mp3")
    audio(root / "clips_45seconds" / "3.mp3")
    d = read("emomusic", tmp_path)
    assert d.task == "regression" and d.columns == ["path", "arousal", "valence", "group", "split"]
    by = {Path(r["path"]).name: r for r in d.rows}
    assert by["2.mp3"]["arousal"] == 3.1 and by["2.mp3"]["valence"] == 3.0
    assert by["2.mp3"]["group"] == by["3.mp3"]["group"] == "def leppard"
    assert by["2.mp3"]["split"] == "train" and by["3.mp3"]["split"] == "test"
    assert any("1 annotated songs have no clip" in n for n in d.notes)
    out = d.write(tmp_path / "emo.csv")
    t = read_labels(out)
    assert t.task == "regression" and t.names == ["arousal", "valence"] and t.groups is not None and t.split is not None


def test_pmemo(tmp_path):
    root = tmp_path / "PMEmo2019"
    text(root / "annotations" / "static_annotations.csv", "musicId,Arousal(mean),Valence(mean)\n1,0.4,0.575\n4,0.2625,0.2875\n")
    text(root / "metadata.csv", "musicId,fileName,title,artist,album,duration,chorus_start_time,chorus_end_time\n"
         "1,1.mp3,Good Drank,2 Chainz,Album,200,1:10,1:40\n4,4.mp3,X,Other,Y,180,0:50,1:20\n")
    audio(root / "chorus" / "1.mp3")
    audio(root / "chorus" / "4.mp3")
    d = read("pmemo", tmp_path)
    by = {Path(r["path"]).name: r for r in d.rows}
    assert by["1.mp3"] == {"path": by["1.mp3"]["path"], "arousal": 0.4, "valence": 0.575, "group": "2 chainz"}
    assert len(d) == 2


def test_jamendo_cuts_pure_clips(tmp_path):
    root = tmp_path / "jamendo"
    audio(root / "train" / "01 - 01 Les Jardins Japonais.ogg", seconds=3.5, sr=44100)
    audio(root / "test" / "05 - Elles disent.ogg", seconds=2.2, sr=44100)
    text(root / "jamendo_lab" / "01 - 01 Les Jardins Japonais.lab", "0 1.2 nosing\n1.2 3.5 sing\n")
    text(root / "jamendo_lab" / "05 - Elles disent.lab", "0.0 2.2 sing\n")
    with pytest.raises(DatasetError, match="--clips-dir"):
        read("jamendo", root)
    clips = tmp_path / "clips"
    d = read("jamendo", root, clips_dir=clips, clip_s=1.0)
    got = sorted((r["group"], r["start_s"], r["label"], r["split"]) for r in d.rows)
    assert got == [("01 - 01 Les Jardins Japonais", 0.0, "nonvocal", "train"),
                   ("01 - 01 Les Jardins Japonais", 1.2, "vocal", "train"),
                   ("01 - 01 Les Jardins Japonais", 2.2, "vocal", "train"),
                   ("05 - Elles disent", 0.0, "vocal", "test"),
                   ("05 - Elles disent", 1.0, "vocal", "test")]
    info = sf.info(d.rows[0]["path"])
    assert info.samplerate == 16000 and info.frames == 16000 and info.channels == 1
    mtimes = {r["path"]: Path(r["path"]).stat().st_mtime_ns for r in d.rows}
    again = read("jamendo", root, clips_dir=clips, clip_s=1.0)  # reruns reuse the clips
    assert {r["path"]: Path(r["path"]).stat().st_mtime_ns for r in again.rows} == mtimes
    text(root / "jamendo_lab" / "05 - Elles disent.lab", "0.0 2.2 singing\n")
    with pytest.raises(DatasetError, match=r"Elles disent.lab line 1: expected 'start end sing\|nosing'"):
        read("jamendo", root, clips_dir=clips, clip_s=1.0)


def test_jamendo_schlueter_layout_with_filelists(tmp_path):
    root = tmp_path / "jam"
    audio(root / "audio" / "a.mp3", seconds=1.2)
    audio(root / "audio" / "b.mp3", seconds=1.2)
    text(root / "labels" / "a.lab", "0 1.2 sing\n")
    text(root / "labels" / "b.lab", "0 1.2 nosing\n")
    text(root / "filelists" / "valid", "a.mp3\n")
    text(root / "filelists" / "test", "b.mp3\n")
    d = read("jamendo", root, clips_dir=tmp_path / "c", clip_s=1.0)
    assert sorted((r["group"], r["split"], r["label"]) for r in d.rows) == [("a", "valid", "vocal"), ("b", "test", "nonvocal")]


def test_magnatagatune_top_tags_and_split(tmp_path):
    root = tmp_path / "mtt"
    files = {"0/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-30-59.mp3": ("2", "1", "1", "0"),
             "c/jacob_heringman-josquin_des_prez_lute_settings-19-gintzler__pater_noster-204-233.mp3": ("6", "1", "0", "0"),
             "f/american_bach_soloists-heinrich_schutz__musicalische_exequien-01-nun_lob_mein_seel-0-29.mp3": ("7", "0", "1", "1"),
             "d/missing-clip-01-x-0-29.mp3": ("9", "1", "0", "0")}
    lines = ['"clip_id"\t"classical"\t"guitar"\t"rare"\t"mp3_path"']
    for mp3, (cid, *tags) in files.items():
        lines.append("\t".join(f'"{v}"' for v in [cid, *tags, mp3]))
        if "missing" not in mp3:
            audio(root / mp3)
    text(root / "annotations_final.csv", "\n".join(lines) + "\n")
    d = read("mtt", tmp_path, top=2)
    assert d.task == "multilabel" and len(d) == 3
    by = {r["clip_id"]: r for r in d.rows}
    assert by["2"]["labels"] == ["classical", "guitar"] and by["7"]["labels"] == ["guitar"]  # "rare" is not top-2
    assert (by["2"]["split"], by["6"]["split"], by["7"]["split"]) == ("train", "valid", "test")
    assert by["2"]["group"] == by["7"]["group"] == "american_bach_soloists"
    assert any("1 listed clips have no mp3" in n for n in d.notes)
    t = read_labels(d.write(tmp_path / "mtt.csv"))
    assert t.task == "multilabel" and t.names == ["classical", "guitar"] and t.y.sum() == 4


def test_fma_tracks_csv(tmp_path):
    meta = ("," + ",".join(["album", "artist", "set", "set", "track", "track"]) + "\n"
            + "," + ",".join(["title", "id", "split", "subset", "genre_top", "title"]) + "\n"
            + "track_id,,,,,,\n"
            + '2,AWOL - A Way Of Life,1,training,small,Hip-Hop,"Food, glorious"\n'
            + "3,AWOL,1,training,medium,Hip-Hop,Electric Ave\n"
            + "5,AWOL,1,test,small,,Untitled\n"
            + "10,Constant Hitmaker,6,validation,small,Pop,Freeway\n")
    text(tmp_path / "fma_metadata" / "tracks.csv", meta)
    for tid in (2, 3, 5, 10):
        audio(tmp_path / "fma_small" / "000" / f"{tid:06d}.mp3")
    d = read("fma", tmp_path)
    assert sorted((r["track_id"], r["label"], r["split"], r["group"]) for r in d.rows) == [
        (2, "Hip-Hop", "train", "artist1"), (10, "Pop", "valid", "artist6")]
    assert any("1 tracks without a top genre" in n for n in d.notes)
    with pytest.raises(DatasetError, match="no fma_medium/ audio folder"):
        read("fma", tmp_path, subset="medium")


def test_folders_and_registry_errors(tmp_path):
    audio(tmp_path / "lib" / "happy" / "a" / "x.wav")
    audio(tmp_path / "lib" / "sad" / "y.ogg")
    assert labels_of(read("folders", tmp_path / "lib")) == {"x.wav": "happy", "y.ogg": "sad"}
    with pytest.raises(DatasetError, match="unknown dataset 'gtzam'; known: gtzan"):
        read("gtzam", tmp_path)
    with pytest.raises(DatasetError, match="takes no option top"):
        read("gtzan", tmp_path, top=10)
    with pytest.raises(DatasetError, match="no such folder"):
        read("gtzan", tmp_path / "nowhere")




def test_datasets_cli(tmp_path, capsys):
    for g in ("blues", "metal"):
        for i in range(3):
            audio(tmp_path / "genres" / g / f"{g}.{i:05d}.au")
    out = tmp_path / "labels.csv"
    code, stdout, err = run(capsys, "datasets", "labels", "gtzan", str(tmp_path), "-o", str(out))
    assert code == 0 and "wrote 6 rows (classification, 2 classes: blues 3, metal 3)" in stdout
    assert read_labels(out).class_counts() == {"blues": 3, "metal": 3}
    code, _, err = run(capsys, "datasets", "labels", "gtzan", str(tmp_path), "-o", str(out))
    assert code == 1 and "already exists" in err and err.count("\n") == 1
    code, stdout, _ = run(capsys, "datasets", "labels", "gtzan", str(tmp_path), "-o", str(out), "--force", "--json")
    assert code == 0 and json.loads(stdout)["classes"] == {"blues": 3, "metal": 3}
    code, _, err = run(capsys, "datasets", "labels", "ballroom", str(tmp_path), "-o", str(tmp_path / "b.csv"))
    assert code == 1 and "no Ballroom layout" in err and err.count("\n") == 1
    code, stdout, _ = run(capsys, "datasets", "list")
    assert code == 0 and "magnatagatune" in stdout and "jamendo" in stdout
