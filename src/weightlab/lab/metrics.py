"""Test metrics of one trial, computed by well-kept libraries rather than by hand.

:func:`compute_metrics` turns a trial's test logits into the numbers a study
stores and compares. Every number comes from scikit-learn, imbalanced-learn or
torchmetrics; this module only validates the inputs, picks the classes and
names the results.

Metrics (higher is better unless :data:`HIGHER_IS_BETTER` says otherwise):

========================  ===================================================================
``accuracy``              fraction of test rows predicted right (``sklearn.metrics.accuracy_score``)
``balanced_accuracy``     mean per-class recall (``sklearn.metrics.balanced_accuracy_score``)
``macro_f1``              unweighted mean of per-class F1 (``sklearn.metrics.f1_score``)
``tail_recall``           mean recall of the *tail classes*: the rarest third of the classes
                          by **training** count (``max(1, C // 3)`` classes; ties go to the
                          lower class index)
``gmean``                 geometric mean of the per-class recalls
                          (``imblearn.metrics.geometric_mean_score``); 0 as soon as one
                          class is never recalled
``macro_auprc``           mean over the classes present in the test split of the one-vs-rest
                          average precision of the softmax probability
                          (``sklearn.metrics.average_precision_score``)
``ece``                   expected calibration error of the top-class confidence, 15 equal-width
                          bins, L1 (``torchmetrics`` ``multiclass_calibration_error``); lower is
                          better
========================  ===================================================================

Per-class lists (index = class): ``precision``, ``recall``, ``f1``, ``support``
(test rows), ``train_count`` and ``average_precision`` (NaN for a class absent
from the test split). Precision of a never-predicted class is 0 (scikit-learn's
``zero_division=0``); so is the recall of a class absent from the test split,
which makes ``gmean`` 0 (the lab's test splits are balanced, so this does not
arise there).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from weightlab.errors import InvalidValueError, ShapeMismatchError, expected

__all__ = ["HIGHER_IS_BETTER", "METRIC_NAMES", "compute_metrics", "stacked_metrics", "tail_classes"]

#: The names of the scalar metrics :func:`compute_metrics` returns, in display order.
METRIC_NAMES: tuple[str, ...] = (
    "balanced_accuracy",
    "macro_f1",
    "tail_recall",
    "gmean",
    "macro_auprc",
    "accuracy",
    "ece",
)

#: Whether a larger value of the metric is better (``ece`` is the one that is not).
HIGHER_IS_BETTER: dict[str, bool] = {name: name != "ece" for name in METRIC_NAMES}

#: Bins of the expected calibration error.
ECE_BINS = 15


def tail_classes(train_counts: Sequence[int] | npt.ArrayLike) -> list[int]:
    """Return the tail classes: the ``max(1, C // 3)`` classes with the fewest training examples.

    Ties between equal counts go to the lower class index (a stable sort).

    Example:
        >>> tail_classes([100, 77, 59, 46, 35, 27, 21, 16, 12, 10])
        [7, 8, 9]
        >>> tail_classes([5, 5])
        [0]
    """
    counts = np.asarray(train_counts)
    k = max(1, counts.shape[0] // 3)
    return sorted(int(c) for c in np.argsort(counts, kind="stable")[:k])


def _as_numpy(x: Any, name: str) -> npt.NDArray[Any]:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        return np.asarray(x)
    except (TypeError, ValueError):
        raise InvalidValueError(
            expected(name, "to be an array or a tensor", type(x).__name__, "Pass a numpy array.")
        ) from None


def _check(
    logits: npt.NDArray[Any], y_true: npt.NDArray[Any], counts: npt.NDArray[Any]
) -> None:
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ShapeMismatchError(
            expected(
                "logits",
                "to have shape (rows, classes) with at least 2 classes",
                f"shape {tuple(logits.shape)}",
                "Pass one row of class scores per test example.",
            )
        )
    if y_true.ndim != 1 or y_true.shape[0] != logits.shape[0]:
        raise ShapeMismatchError(
            expected(
                "y_true",
                f"to have shape ({logits.shape[0]},), one label per row of `logits`",
                f"shape {tuple(y_true.shape)}",
                "Pass the class index of every test example.",
            )
        )
    if logits.shape[0] == 0:
        raise ShapeMismatchError(
            expected("logits", "to have at least one row", "0 rows", "Evaluate a non-empty split.")
        )
    num_classes = logits.shape[1]
    if counts.shape != (num_classes,):
        raise ShapeMismatchError(
            expected(
                "train_counts",
                f"to have one entry per class ({num_classes})",
                f"shape {tuple(counts.shape)}",
                "Pass the training count of every class (weightlab.weights.count_labels).",
            )
        )
    if not np.issubdtype(y_true.dtype, np.integer):
        raise InvalidValueError(
            expected(
                "y_true",
                "to hold integer class indices",
                f"dtype {y_true.dtype}",
                "Cast the labels to int64.",
            )
        )
    if y_true.min() < 0 or y_true.max() >= num_classes:
        raise InvalidValueError(
            expected(
                "y_true",
                f"to lie in [0, {num_classes})",
                f"labels from {int(y_true.min())} to {int(y_true.max())}",
                "Give `logits` one column per class.",
            )
        )
    if not np.all(np.isfinite(logits)):
        bad = int(np.size(logits) - np.count_nonzero(np.isfinite(logits)))
        raise InvalidValueError(
            expected(
                "logits",
                "to be finite",
                f"{bad} NaN or infinite values",
                "The model diverged; store the trial as failed instead of scoring it.",
            )
        )


def compute_metrics(
    logits: npt.ArrayLike | Any,
    y_true: npt.ArrayLike | Any,
    train_counts: Sequence[int] | npt.ArrayLike,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Score test logits: scalar metrics and per-class metrics (see the module docstring).

    Args:
        logits: class scores, shape ``(rows, classes)`` (numpy array or tensor);
            probabilities are their softmax.
        y_true: class indices, shape ``(rows,)``, integers in ``[0, classes)``.
        train_counts: training examples per class, shape ``(classes,)``; they
            decide which classes are the tail.

    Returns:
        ``(metrics, per_class)``: ``metrics`` maps each name of
        :data:`METRIC_NAMES` to a float; ``per_class`` maps ``precision``,
        ``recall``, ``f1``, ``support``, ``train_count`` and
        ``average_precision`` to lists over classes.

    Raises:
        ShapeMismatchError: if the shapes do not fit together.
        InvalidValueError: if labels are out of range or not integers, or the
            logits hold NaN or infinity.

    Example:
        >>> logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
        >>> m, pc = compute_metrics(logits, np.array([0, 1, 1, 1]), [10, 2])
        >>> m["accuracy"], m["balanced_accuracy"], m["tail_recall"]
        (0.75, 0.8333..., 0.6666...)
        >>> pc["recall"]
        [1.0, 0.6666...]
    """
    import torch
    from imblearn.metrics import geometric_mean_score
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        balanced_accuracy_score,
        f1_score,
        precision_recall_fscore_support,
    )
    from torchmetrics.functional.classification import multiclass_calibration_error

    z = _as_numpy(logits, "logits")
    y = _as_numpy(y_true, "y_true")
    counts = _as_numpy(train_counts, "train_counts")
    _check(z, y, counts)
    z = z.astype(np.float64)
    y = y.astype(np.int64)
    num_classes = z.shape[1]
    labels = list(range(num_classes))
    pred = z.argmax(axis=1)
    probs = torch.softmax(torch.from_numpy(z), dim=1)

    with warnings.catch_warnings():
        # A class absent from the test split has an undefined recall; scikit-learn
        # and imbalanced-learn count it as 0 and warn. Test splits here are balanced.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        precision, recall, f1, support = precision_recall_fscore_support(
            y, pred, labels=labels, zero_division=0
        )
        gmean = float(geometric_mean_score(y, pred, labels=labels, average="multiclass"))
    tail = tail_classes(counts)
    # one-vs-rest AP of every class present in the test split, in one call (one input check)
    present = [c for c in labels if np.any(y == c)]
    ap_present = average_precision_score(
        (y[:, None] == np.asarray(present)[None, :]).astype(np.int64),
        probs[:, present].numpy(),
        average=None,
    )
    by_class = dict(zip(present, np.atleast_1d(ap_present).tolist(), strict=True))
    ap = [float(by_class[c]) if c in by_class else math.nan for c in labels]
    present_ap = [a for a in ap if not math.isnan(a)]
    ece = multiclass_calibration_error(
        probs.float(), torch.from_numpy(y), num_classes=num_classes, n_bins=ECE_BINS, norm="l1"
    )
    metrics = {
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "tail_recall": float(np.mean(recall[tail])),
        "gmean": gmean,
        "macro_auprc": float(np.mean(present_ap)),
        "accuracy": float(accuracy_score(y, pred)),
        "ece": float(ece),
    }
    per_class = {
        "precision": [float(v) for v in precision],
        "recall": [float(v) for v in recall],
        "f1": [float(v) for v in f1],
        "support": [float(v) for v in support],
        "train_count": [float(v) for v in counts],
        "average_precision": ap,
    }
    return metrics, per_class


def _average_precision(scores: npt.NDArray[np.float64], positive: npt.NDArray[np.bool_]) -> float:
    """One-vs-rest average precision with scikit-learn's tie rule (one step per distinct score)."""
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order]
    tp = np.cumsum(p)
    fp = np.cumsum(~p)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the end of each run of equal scores
    tp, fp = tp[last], fp[last]
    recall_step = np.diff(np.r_[0, tp]) / tp[-1]
    return float(np.sum(recall_step * tp / (tp + fp)))


def stacked_metrics(
    logits: npt.ArrayLike | Any,
    y_true: npt.ArrayLike | Any,
    train_counts: Sequence[int] | npt.ArrayLike,
) -> list[dict[str, float]]:
    """The metrics of :func:`compute_metrics` for K slices' logits ``(K, N, C)`` at once.

    The same definitions and values (tested against :func:`compute_metrics`
    to float tolerance), computed with numpy over the slices instead of one
    library call per metric per trial (about 50 ms per trial, mostly
    scikit-learn's input checks): what a tuner scores every trial's
    validation split with. Per-class lists are not computed.

    Example:
        >>> z = np.array([[[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]]])
        >>> m = stacked_metrics(z, np.array([0, 1, 1, 1]), [10, 2])[0]
        >>> m["accuracy"], round(m["balanced_accuracy"], 4), round(m["tail_recall"], 4)
        (0.75, 0.8333, 0.6667)
    """
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    z = np.asarray(_as_numpy(logits, "logits"), dtype=np.float64)
    y = np.asarray(_as_numpy(y_true, "y_true"), dtype=np.int64)
    counts = _as_numpy(train_counts, "train_counts")
    if z.ndim != 3:
        raise ShapeMismatchError(
            expected("logits", "to have shape (K, rows, classes)", f"shape {z.shape}",
                     "Stack one (rows, classes) array per slice.")
        )  # fmt: skip
    for zk in z:
        _check(zk, y, counts)
    k, n, c = z.shape
    pred = z.argmax(-1)
    flat = (np.arange(k)[:, None] * c + y[None, :]) * c + pred
    conf = np.bincount(flat.ravel(), minlength=k * c * c).reshape(k, c, c).astype(np.float64)
    tp = np.diagonal(conf, axis1=1, axis2=2)
    support = conf.sum(2)
    predicted = conf.sum(1)
    present = support[0] > 0
    recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
    denom = support + predicted
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    tail = tail_classes(counts)
    with np.errstate(divide="ignore"):
        gmean = np.exp(np.log(recall).mean(1))
    probs = torch.softmax(torch.from_numpy(z), dim=-1)
    p = probs.numpy()
    out = []
    for i in range(k):
        ap = [_average_precision(p[i, :, j], y == j) for j in range(c) if present[j]]
        ece = multiclass_calibration_error(
            probs[i].float(), torch.from_numpy(y), num_classes=c, n_bins=ECE_BINS, norm="l1"
        )
        out.append({
            "balanced_accuracy": float(recall[i, present].mean()),
            "macro_f1": float(f1[i].mean()),
            "tail_recall": float(recall[i, tail].mean()),
            "gmean": float(gmean[i]),
            "macro_auprc": float(np.mean(ap)),
            "accuracy": float(tp[i].sum() / n),
            "ece": float(ece),
        })  # fmt: skip
    return out
