"""A card's digest of its own content (``card_sha256``, `embedkit.sidecar.seal`): head and index cards.

A flipped digit in a card's own numbers is refused with one line naming the file and the way out;
cards written before the digest existed (embedkit 0.1) still load.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.heads import HeadError
from embedkit.heads.card import read_card, write_head
from embedkit.index.base import IndexStateError
from embedkit.index.vector_index import VectorIndex
from embedkit.sidecar import SELF_DIGEST_KEY, seal, seal_problem


def test_seal_round_trips_through_json_and_catches_any_change():
    doc = {"b": [1, 2.5, np.float32(0.1)], "a": {"x": "é", "n": np.int64(3)}, "t": (1, 2)}
    sealed = seal(doc)
    back = json.loads(json.dumps(sealed, indent=2))  # any indentation / key order reads back the same
    assert seal_problem(back) is None
    back["b"][1] = 2.6
    assert "does not match" in seal_problem(back)
    legacy = {"a": 1}
    assert seal_problem(legacy) is None  # written before self-digests: accepted
    damaged_key = {"a": 1, "card_sha2S6": sealed[SELF_DIGEST_KEY]}
    assert "damaged" in seal_problem(damaged_key)


def test_head_card_with_a_changed_number_is_refused(tmp_path):
    card = {"format": "embedkit-head", "format_version": 1, "threshold": 0.25, "classes": ["a", "b"]}
    out = write_head(tmp_path / "h.head", card, {"w": np.arange(4, dtype=np.float32)})
    assert read_card(out)["threshold"] == 0.25
    text = (out / "card.json").read_text()
    (out / "card.json").write_text(text.replace("0.25", "0.35"))
    with pytest.raises(HeadError, match=r"card\.json: damaged head card .*retrain") as exc:
        read_card(out)
    assert "\n" not in str(exc.value)
    legacy = json.loads(text)
    legacy.pop(SELF_DIGEST_KEY)
    legacy["threshold"] = 0.35
    (out / "card.json").write_text(json.dumps(legacy))
    assert read_card(out)["threshold"] == 0.35  # an 0.1 card (no digest) still loads


def test_index_card_with_a_changed_field_is_refused(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    VectorIndex.build(x, kind="flat").save(tmp_path, "i")
    card = json.loads((tmp_path / "i.json").read_text())
    assert isinstance(card[SELF_DIGEST_KEY], str)
    card["transform"]["metric"] = "l2" if card["transform"]["metric"] != "l2" else "ip"
    (tmp_path / "i.json").write_text(json.dumps(card))
    with pytest.raises(IndexStateError, match=r"i\.json: damaged index card .*rebuild"):
        VectorIndex.load(tmp_path, "i")
