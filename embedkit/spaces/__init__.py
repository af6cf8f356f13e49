"""Similarity spaces: a space tuned to what the user calls "similar" (issue 12).

>>> from embedkit.spaces import load_space                      # doctest: +SKIP
>>> sp = load_space("music.ekstore", "albums")                   # STORE/spaces/albums.{json,npz}
>>> Z = sp.transform(X)                                          # (n, 640) -> (n, 128) unit vectors; cosine = Z @ Z.T

- `zero_label`: centring / standardisation / PCA(-whitening), chosen on a self-retrieval proxy;
- `train`: a linear or MLP projection learnt with a batch-hard triplet loss from groups (albums,
  artists, playlists) or, without groups, from segments of the same recording;
- `fitting`: the store-level entry points behind ``embedkit metric``;
- `metrics`: triplet accuracy, recall@k and mAP of same-group retrieval.
"""
from __future__ import annotations

from .space import (
    Space,
    SpaceError,
    SpaceMismatchError,
    list_spaces,
    load_space,
    save_space,
    space_dir,
    space_path,
)

__all__ = ["Space", "SpaceError", "SpaceMismatchError", "list_spaces", "load_space", "save_space", "space_dir",
           "space_path"]
