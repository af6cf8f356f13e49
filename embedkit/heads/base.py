"""What every head module shares: tasks, per-task defaults, and the head errors."""
from __future__ import annotations

from ..errors import EmbedkitError

TASKS = ("classification", "regression", "multilabel")
DEFAULT_KIND = {"classification": "svm", "regression": "svr", "multilabel": "logreg"}
SELECTION_METRIC = {"classification": "accuracy", "regression": "r2", "multilabel": "roc_auc"}


class HeadError(EmbedkitError):
    """A head cannot be trained, saved, loaded or applied (message names the file or value)."""


class NotFittedError(HeadError, AttributeError):
    """The head has not been fitted yet: call ``fit`` or ``Head.load`` first."""
