r"""Keras's ``fit(class_weight=...)`` as the tensors weightlab and PyTorch losses take.

Keras (3.x) turns ``class_weight={c: w_c}`` into one weight per sample,
:math:`s_i = w_{y_i}` (``keras.src.trainers.data_adapters.data_adapter_utils.
class_weight_to_sample_weights``), and its losses' default reduction
``"sum_over_batch_size"`` sums the weighted losses and divides by the number of
elements, **not** by the sum of the weights:

.. math:: L_\text{Keras} = \frac{1}{N} \sum_{i=1}^{N} w_{y_i} \, l_i

That is weightlab's ``normalize="count"``. PyTorch's
``nn.CrossEntropyLoss(weight=w)`` (and weightlab's default for class indices,
``normalize="weight"``) divides by :math:`\sum_i w_{y_i}` instead, which is
Keras's ``reduction="mean_with_sample_weight"``. The two differ by the batch's
mean weight :math:`\bar w = \frac1N \sum_i w_{y_i}`:
:math:`L_\text{Keras} = \bar w \, L_\text{PyTorch}`, so under Keras's
convention the scale of the weights (and how many rare samples a batch holds)
changes the loss and the effective learning rate; under PyTorch's it does not.

Example:
    >>> import torch
    >>> from weightlab.functional import cross_entropy
    >>> y = torch.tensor([0, 0, 0, 1])
    >>> keras_class_weight({0: 1.0, 1: 10.0})
    tensor([ 1., 10.])
    >>> keras_sample_weight({0: 1.0, 1: 10.0}, y)
    tensor([ 1.,  1.,  1., 10.])
    >>> keras_class_weight("balanced", y)  # n_samples / (n_classes * bincount(y))
    tensor([0.6667, 2.0000])
    >>> logits = torch.zeros(4, 2)
    >>> w = keras_class_weight({0: 1.0, 1: 10.0})
    >>> cross_entropy(logits, y, class_weight=w, normalize="count")  # Keras: 13 ln2 / 4
    tensor(2.2527)
    >>> cross_entropy(logits, y, class_weight=w)  # PyTorch: 13 ln2 / 13
    tensor(0.6931)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from weightlab.errors import InvalidValueError, InvalidWeightError, expected, names
from weightlab.functional._validation import check_weight_values
from weightlab.weights import class_weights, count_labels

__all__ = ["KERAS_NORMALIZE", "keras_class_weight", "keras_sample_weight"]

KERAS_NORMALIZE = "count"
"""The weightlab ``normalize=`` that equals Keras's default ``"sum_over_batch_size"``."""

ClassWeightArg = Mapping[Any, float] | str


def keras_class_weight(
    class_weight: ClassWeightArg,
    labels: object = None,
    *,
    num_classes: int | None = None,
    default: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""The ``(C,)`` class-weight tensor of a Keras ``class_weight`` argument.

    * a mapping ``{class_index: weight}``: :math:`w_c` = the mapping's value
      for class :math:`c`. Every class ``0 .. C-1`` must have a weight, unless
      ``default`` is given (Keras 3 itself gives a class it is not told about
      weight 1, silently: pass ``default=1.0`` for that).
    * ``"balanced"``: scikit-learn's and Keras tutorials' weights, from the
      labels, :math:`w_c = N / (C \, n_c)` with :math:`n_c` the count of class
      :math:`c` among the :math:`N` labels (``compute_class_weight("balanced")``;
      the weighted number of samples :math:`\sum_c n_c w_c` equals :math:`N`).

    ``C`` is ``num_classes`` if given; otherwise, for a mapping, the largest of
    its largest key + 1 and (with ``labels``) the largest label + 1, and for
    ``"balanced"`` the largest label + 1.

    The tensor goes to ``class_weight=`` of a weightlab loss (or ``weight=`` of
    a PyTorch one). For Keras's numbers pass ``normalize="count"``
    (:data:`KERAS_NORMALIZE`): the loss is :math:`\frac1N\sum_i w_{y_i} l_i`.
    PyTorch's default divides by :math:`\sum_i w_{y_i}` instead.

    Args:
        class_weight: a mapping ``{int class index: weight >= 0}`` or ``"balanced"``.
        labels: class indices ``(N,)`` (list, numpy array, tensor, or anything
            :func:`~weightlab.weights.count_labels` counts). Needed for
            ``"balanced"``; optional for a mapping (it then sets ``C``).
        num_classes: the number of classes ``C``. Default ``None`` (see above).
        default: the weight of a class the mapping leaves out. Default ``None``:
            a missing class is an error.
        dtype: the floating dtype of the result. Default ``torch.float32``.

    Returns:
        A CPU tensor of shape ``(C,)``.

    Raises:
        InvalidValueError: for a string other than ``"balanced"``, ``"balanced"``
            without labels, keys that are not class indices in ``[0, C)``, or a
            mapping that leaves out a class and no ``default``.
        InvalidWeightError: for a negative, NaN or infinite weight, or all zeros.
        ZeroCountError: for ``"balanced"`` when a class in ``[0, C)`` has no label.

    Example:
        >>> keras_class_weight({0: 1.0, 2: 5.0}, default=1.0)
        tensor([1., 1., 5.])
        >>> keras_class_weight("balanced", [0, 0, 0, 1, 2, 2])
        tensor([0.6667, 2.0000, 1.0000])
    """
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise InvalidValueError(
                expected(
                    "class_weight",
                    "to be a mapping {class index: weight} or 'balanced'",
                    repr(class_weight),
                    "Pass 'balanced', or a dict such as {0: 1.0, 1: 10.0}.",
                )
            )
        if labels is None:
            raise InvalidValueError(
                expected(
                    "labels",
                    "to be given with class_weight='balanced' "
                    "(its weights are n_samples / (n_classes * bincount(labels)))",
                    "None",
                    "Pass the training labels: keras_class_weight('balanced', y_train).",
                )
            )
        counts = count_labels(labels, num_classes, multilabel=False)
        w = class_weights(counts, "balanced", normalize="none")
        return torch.as_tensor(w, dtype=dtype)
    if not isinstance(class_weight, Mapping):
        raise InvalidValueError(
            expected(
                "class_weight",
                "to be a mapping {class index: weight} or 'balanced'",
                f"a {type(class_weight).__name__}",
                "Pass 'balanced', or a dict such as {0: 1.0, 1: 10.0}.",
            )
        )
    return _from_mapping(class_weight, labels, num_classes, default, dtype)


def keras_sample_weight(
    class_weight: ClassWeightArg,
    labels: object,
    *,
    num_classes: int | None = None,
    default: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Per-sample weights :math:`s_i = w_{y_i}`, what Keras's ``fit`` makes of ``class_weight``.

    :math:`w` is :func:`keras_class_weight` of the same arguments (so
    ``"balanced"`` equals scikit-learn's ``compute_sample_weight("balanced", y)``).
    Pass the result as ``sample_weight=`` of a weightlab loss with
    ``normalize="count"`` for Keras's default reduction,
    :math:`\frac1N \sum_i s_i l_i`; with the default ``normalize="weight"``
    it divides by :math:`\sum_i s_i` (Keras's ``"mean_with_sample_weight"``).

    Args:
        class_weight: a mapping ``{int class index: weight >= 0}`` or ``"balanced"``.
        labels: class indices of shape ``(N,)`` (list, numpy array or tensor;
            whole-number floats are accepted).
        num_classes: the number of classes ``C``. Default ``None``: inferred as
            in :func:`keras_class_weight`.
        default: the weight of a class the mapping leaves out. Default ``None``:
            a missing class is an error.
        dtype: the floating dtype of the result. Default ``torch.float32``.

    Returns:
        A tensor of shape ``(N,)``, on the labels' device when they are a tensor.

    Raises:
        InvalidValueError, InvalidWeightError, ZeroCountError: as
            :func:`keras_class_weight`; ``TargetOutOfRangeError`` for a label
            outside ``[0, C)``.

    Example:
        >>> keras_sample_weight("balanced", [0, 0, 0, 1])
        tensor([0.6667, 0.6667, 0.6667, 2.0000])
    """
    counts = count_labels(labels, num_classes, multilabel=False)
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels)
    y = y.to(torch.int64)
    if num_classes is None and not isinstance(class_weight, str):
        num_classes = max(len(counts), _largest_key(class_weight) + 1)
    w = keras_class_weight(
        class_weight, labels, num_classes=num_classes, default=default, dtype=dtype
    )
    return w.to(y.device)[y]


def _largest_key(mapping: object) -> int:
    if isinstance(mapping, Mapping):
        keys = [int(k) for k in mapping if _is_index(k)]
        if keys:
            return max(keys)
    return -1


def _is_index(key: object) -> bool:
    return isinstance(key, int | np.integer) and not isinstance(key, bool) and int(key) >= 0


def _from_mapping(
    mapping: Mapping[Any, float],
    labels: object,
    num_classes: int | None,
    default: float | None,
    dtype: torch.dtype,
) -> Tensor:
    not_indices = [k for k in mapping if not _is_index(k)]
    if not_indices:
        raise InvalidValueError(
            expected(
                "class_weight",
                "to be keyed by class indices (integers >= 0), as Keras's fit takes it",
                f"keys {names(not_indices)}",
                "Key the weights by class index, e.g. {0: 1.0, 1: 10.0}.",
            )
        )
    if num_classes is None:
        size = _largest_key(mapping) + 1
        if labels is not None:
            size = max(size, len(count_labels(labels, multilabel=False)))
    else:
        size = num_classes
        unknown = [k for k in mapping if int(k) >= num_classes]
        if unknown:
            raise InvalidValueError(
                expected(
                    "class_weight",
                    f"to be keyed by class indices in [0, {num_classes - 1}] "
                    f"(num_classes={num_classes})",
                    f"unknown classes {names(unknown)}",
                    "Remove those keys, or raise num_classes.",
                )
            )
    if size == 0:
        raise InvalidValueError(
            expected(
                "class_weight",
                "to have a weight for at least one class",
                "an empty mapping",
                "Pass a dict such as {0: 1.0, 1: 10.0}, or 'balanced'.",
            )
        )
    negative = [k for k, v in mapping.items() if float(v) < 0]
    if negative:
        raise InvalidWeightError(
            expected(
                "class_weight",
                "to be non-negative",
                ", ".join(f"{mapping[k]!r} for class {int(k)}" for k in negative),
                "Weights scale each sample's loss; use 0 to drop a class, never a negative value.",
            )
        )
    missing = [c for c in range(size) if c not in {int(k) for k in mapping}]
    if missing and default is None:
        listed = ", ".join(str(c) for c in missing)
        raise InvalidValueError(
            expected(
                "class_weight",
                f"to have a weight for every class 0..{size - 1}",
                f"none for class{'es' if len(missing) > 1 else ''} {listed}",
                "Add them, or pass default=1.0 (what Keras's fit gives a class it is not told).",
            )
        )
    fill = 1.0 if default is None else float(default)
    weight = torch.full((size,), fill, dtype=torch.float64)
    for key, value in mapping.items():
        weight[int(key)] = float(value)
    check_weight_values("class_weight", weight)
    return weight.to(dtype)
