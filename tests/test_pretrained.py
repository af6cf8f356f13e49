"""Model cache: conversion from the musicnn wheel, checksums, clear errors for bad wheels and tampered weights."""
from __future__ import annotations

import json
import shutil

import pytest

from embedkit import pretrained
from embedkit.errors import EmbedkitError, WeightsMissingError
from embedkit.pretrained.convert import WHEEL_SHA256, convert, obtain_wheel


def test_cards_describe_every_model():
    for name in pretrained.MODEL_NAMES:
        card = pretrained.source_card(name)
        assert card["license"].startswith("ISC") and card["source"]["sha256"] == WHEEL_SHA256
        assert len(card["labels"]) == 50 and card["parameters"] in (607030, 792079)
        assert card["preprocessing"]["pad_mode"] == "reflect" and card["input"]["patch"] == [187, 96]
    assert pretrained.check_name("MSD-vgg") == "msd_vgg"
    with pytest.raises(EmbedkitError, match="unknown model 'vggish'"):
        pretrained.check_name("vggish")


def test_conversion_is_reproducible_from_a_local_wheel(tmp_path, monkeypatch):
    wheel = obtain_wheel()  # cached by `make setup`
    installed = pretrained.installed_card("msd_vgg")
    monkeypatch.setenv("EMBEDKIT_HOME", str(tmp_path))
    card = convert("msd_vgg", wheel=wheel)
    assert card["parameters"] == 607030
    assert card["tensor_sha256"] == installed["tensor_sha256"]  # same weight values as the installed copy
    assert pretrained.weights_path("msd_vgg").exists()


def test_wrong_wheel_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDKIT_HOME", str(tmp_path))
    fake = tmp_path / "musicnn-0.1.0-py3-none-any.whl"
    fake.write_bytes(b"PK\x03\x04 not the real wheel")
    with pytest.raises(EmbedkitError, match="sha256 .* does not match musicnn 0.1.0"):
        convert("msd_vgg", wheel=fake)
    with pytest.raises(EmbedkitError, match="no such wheel file"):
        convert("msd_vgg", wheel=tmp_path / "nope.whl")


def test_tampered_weights_are_detected(tmp_path, monkeypatch):
    src = pretrained.model_dir("msd_vgg")
    monkeypatch.setenv("EMBEDKIT_HOME", str(tmp_path))
    dst = pretrained.model_dir("msd_vgg")
    shutil.copytree(src, dst)
    assert pretrained.weights_path("msd_vgg") == dst / pretrained.WEIGHTS_FILE
    with open(dst / pretrained.WEIGHTS_FILE, "r+b") as f:
        f.seek(5000)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(WeightsMissingError, match="fail their checksum; run: embedkit models fetch msd_vgg --force"):
        pretrained.weights_path("msd_vgg")
    card = json.loads((dst / pretrained.CARD_FILE).read_text())
    assert card["converted"]["wheel_sha256"] == WHEEL_SHA256
