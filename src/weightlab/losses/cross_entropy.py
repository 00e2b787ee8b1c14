"""``CrossEntropyLoss`` and ``BinaryCrossEntropyLoss``: modules over the functional losses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from weightlab.functional import LossParts, binary_cross_entropy, cross_entropy
from weightlab.functional._validation import (
    Normalize,
    Reduction,
    WeightLike,
    check_probability_range,
)
from weightlab.losses._base import WeightedLoss
from weightlab.losses._registry import LOSSES, LossInfo
from weightlab.losses._weights import ClassWeightLike, HasClasses

__all__ = ["BCEWithLogitsLoss", "BinaryCrossEntropyLoss", "CrossEntropyLoss"]


@LOSSES.register(
    "cross_entropy",
    LossInfo(
        "multiclass",
        cross_entropy,
        lab_excluded="it is the lab's base loss: 'none', 'power' and every weight scheme "
        "train cross-entropy with those class weights",
    ),
)
class CrossEntropyLoss(WeightedLoss):
    """Softmax cross-entropy; ``forward`` is :func:`weightlab.functional.cross_entropy`.

    A drop-in for ``nn.CrossEntropyLoss(weight=w)``: ``CrossEntropyLoss(class_weight=w)``
    gives identical numbers. The class weights are a buffer, so they follow
    ``.to(device)`` and are saved in ``state_dict``. Sample weights are passed
    per call.

    Args:
        class_weight: per-class weights: a list, numpy array, tensor, or a mapping
            ``{class: weight}`` (with ``num_classes`` or ``classes``; classes
            left out weigh 1).
        num_classes: number of classes, to check the weights' length.
        classes: class names in index order, or a fitted label encoder (``classes_``).
        ignore_index: class index that contributes nothing.
        label_smoothing: epsilon in [0, 1].
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"weight"``, ``"count"`` or ``None`` (PyTorch's convention).
        validate_args: run value checks that sync the device on every call.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> loss = CrossEntropyLoss(class_weight={"rare": 4.0}, classes=["common", "rare"])
        >>> loss.class_weight
        tensor([1., 4.])
        >>> logits, target = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
        >>> torch.allclose(loss(logits, target),
        ...                nn.CrossEntropyLoss(weight=loss.class_weight)(logits, target))
        True
    """

    class_weight: Tensor | None

    repr_fields = ("ignore_index", "label_smoothing")

    def __init__(
        self,
        class_weight: ClassWeightLike | None = None,
        *,
        num_classes: int | None = None,
        classes: Sequence[Any] | HasClasses | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: Reduction = "mean",
        normalize: Normalize | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, normalize=normalize, validate_args=validate_args)
        check_probability_range("label_smoothing", label_smoothing)
        self.register_weight("class_weight", class_weight, num_classes=num_classes, classes=classes)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(
        self, input: Tensor, target: Tensor, sample_weight: WeightLike | None = None
    ) -> Tensor | LossParts:
        """Return :func:`weightlab.functional.cross_entropy` with this module's settings."""
        return cross_entropy(
            input,
            target,
            class_weight=self.class_weight,
            sample_weight=sample_weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
            normalize=self.normalize,
            validate_args=self.validate_args,
        )


@LOSSES.register(
    "binary_cross_entropy",
    LossInfo(
        "multilabel",
        binary_cross_entropy,
        lab_excluded="sigmoid loss on 0/1 targets; the lab trains softmax classifiers",
    ),
)
class BinaryCrossEntropyLoss(WeightedLoss):
    """Sigmoid (multi-label) cross-entropy on logits; see ``functional.binary_cross_entropy``.

    A drop-in for ``nn.BCEWithLogitsLoss(pos_weight=p)`` (also exported under
    that name). ``class_weight`` (``[w_neg, w_pos]`` or ``(L, 2)``) and
    ``pos_weight`` are buffers.

    Args:
        class_weight: ``[w_negative, w_positive]``, or one row per label ``(L, 2)``.
        pos_weight: weight of the positive term, scalar or per label: ``(L,)``, or
            PyTorch's ``(L, 1, ..., 1)`` layout (e.g. ``(C, 1, 1)`` for ``(N, C, H, W)``).
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"count"`` (default) or ``"weight"``.
        validate_args: run value checks that sync the device on every call.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> x, t = torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 0.0]])
        >>> ours = BinaryCrossEntropyLoss(pos_weight=[3.0, 1.0])(x, t)
        >>> torch.allclose(ours, nn.BCEWithLogitsLoss(pos_weight=torch.tensor([3.0, 1.0]))(x, t))
        True
    """

    class_weight: Tensor | None
    pos_weight: Tensor | None

    def __init__(
        self,
        class_weight: WeightLike | None = None,
        *,
        pos_weight: WeightLike | None = None,
        reduction: Reduction = "mean",
        normalize: Normalize | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, normalize=normalize, validate_args=validate_args)
        self.register_weight("class_weight", class_weight)
        self.register_weight("pos_weight", pos_weight)

    def forward(
        self, input: Tensor, target: Tensor, sample_weight: WeightLike | None = None
    ) -> Tensor | LossParts:
        """Return :func:`weightlab.functional.binary_cross_entropy` with this module's settings."""
        # mypy gives up expanding this many union arguments against the overloads.
        return binary_cross_entropy(  # type: ignore[misc]
            input,
            target,
            class_weight=self.class_weight,
            pos_weight=self.pos_weight,
            sample_weight=sample_weight,
            reduction=self.reduction,  # type: ignore[arg-type]
            normalize=self.normalize,
            validate_args=self.validate_args,
        )


#: PyTorch's name for the same loss, for drop-in replacement.
BCEWithLogitsLoss = BinaryCrossEntropyLoss
