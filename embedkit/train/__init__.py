"""Training the model zoo (`embedkit.backbones`): ``embedkit fit``'s engine.

Modules, one job each: `sources` (files, stores, labels, grouped split), `augment` (on-the-fly
augmentation), `teacher` (distillation targets), `data` (decode cache + tf.data patch sampler),
`losses` (losses and metrics), `checkpoint` (per-epoch state), `loop` (the fit loop), `fit`
(orchestration into the model cache), `profile` (parameters and FLOPs).

>>> from embedkit.train import fit                                   # doctest: +SKIP
>>> fit(["music/"], arch="dieleman", teacher="msd_vgg", name="tiny")  # doctest: +SKIP
"""
from __future__ import annotations

from .fit import fit  # no TensorFlow at import time; rebinds the name from the submodule to the function

__all__ = ["fit"]
