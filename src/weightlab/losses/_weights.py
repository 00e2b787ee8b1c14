"""Turn the weight arguments users pass (lists, arrays, tensors, mappings) into tensors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from weightlab.errors import InvalidValueError, InvalidWeightError, expected, names
from weightlab.functional._validation import check_weight_values

__all__ = ["ClassWeightLike", "HasClasses", "resolve_classes", "to_weight_tensor"]

ClassWeightLike = Tensor | Sequence[float] | np.ndarray[Any, Any] | Mapping[Any, float]


class HasClasses(Protocol):
    """Anything with a ``classes_`` attribute, such as scikit-learn's ``LabelEncoder``."""

    classes_: Any


def resolve_classes(classes: Sequence[Any] | HasClasses | None) -> list[Any] | None:
    """Return class names in index order, from a sequence or a fitted label encoder."""
    if classes is None:
        return None
    if hasattr(classes, "classes_"):
        return list(classes.classes_)
    return list(classes)


def to_weight_tensor(
    value: ClassWeightLike,
    *,
    name: str,
    num_classes: int | None = None,
    classes: Sequence[Any] | HasClasses | None = None,
) -> Tensor:
    """Convert ``value`` to a float32 tensor of per-class weights and check its values.

    A mapping ``{class: weight}`` is keyed by class index (give ``num_classes``)
    or by class name (give ``classes``: names in index order, or a fitted
    label encoder). As in scikit-learn, classes the mapping leaves out weigh 1.

    Example:
        >>> to_weight_tensor({2: 5.0}, name="class_weight", num_classes=3)
        tensor([1., 1., 5.])
        >>> to_weight_tensor({"dog": 2.0}, name="class_weight", classes=["cat", "dog"])
        tensor([1., 2.])
    """
    names_in_order = resolve_classes(classes)
    if isinstance(value, Mapping):
        weight = _from_mapping(value, name, num_classes, names_in_order)
    elif isinstance(value, Tensor):
        weight = value.detach().to(torch.float32).clone()
    else:
        weight = torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=torch.float32)
    expected_len = (
        num_classes
        if num_classes is not None
        else (len(names_in_order) if names_in_order is not None else None)
    )
    if weight.dim() == 1 and expected_len is not None and weight.shape[0] != expected_len:
        raise InvalidWeightError(
            expected(
                name,
                f"to have one entry per class ({expected_len})",
                f"shape {tuple(weight.shape)}",
                "Pass a weight for every class, or fix `num_classes`/`classes`.",
            )
        )
    check_weight_values(name, weight)
    return weight


def _from_mapping(
    mapping: Mapping[Any, float], name: str, num_classes: int | None, classes: list[Any] | None
) -> Tensor:
    if classes is not None:
        unknown = [k for k in mapping if k not in classes]
        if unknown:
            raise InvalidValueError(
                expected(
                    name,
                    f"to be keyed by the classes {names(classes)}",
                    f"unknown classes {names(unknown)}",
                    "Use the class names of the label encoder, or index keys with `num_classes`.",
                )
            )
        index = {c: i for i, c in enumerate(classes)}
        size = len(classes)
    elif num_classes is not None:
        bad = [k for k in mapping if not (isinstance(k, int | np.integer) and 0 <= k < num_classes)]
        if bad:
            raise InvalidValueError(
                expected(
                    name,
                    f"to be keyed by class indices in [0, {num_classes - 1}]",
                    f"keys {names(bad)}",
                    "Use integer class indices, or pass `classes=` to key by class name.",
                )
            )
        index = {k: int(k) for k in mapping}
        size = num_classes
    else:
        raise InvalidValueError(
            expected(
                name,
                "given as a mapping to come with `num_classes` or `classes`",
                "neither",
                "Pass `num_classes=C` (keys are indices) or `classes=names` (keys are names).",
            )
        )
    weight = torch.ones(size, dtype=torch.float32)
    for key, w in mapping.items():
        weight[index[key]] = float(w)
    return weight
