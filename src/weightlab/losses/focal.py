"""``FocalLoss`` and ``SigmoidFocalLoss``: modules over the functional focal losses."""

from __future__ import annotations

from torch import Tensor

from weightlab.functional import LossParts, focal_loss, sigmoid_focal_loss
from weightlab.functional._validation import (
    Normalize,
    Reduction,
    WeightLike,
)
from weightlab.functional.focal import check_alpha, check_gamma
from weightlab.losses._base import WeightedLoss
from weightlab.losses._registry import LOSSES, LossInfo, TunableParam
from weightlab.losses._weights import ClassWeightLike

__all__ = ["FocalLoss", "SigmoidFocalLoss"]


@LOSSES.register(
    "focal",
    LossInfo("multiclass", focal_loss, params={"gamma": TunableParam(2.0, 0.0, 5.0)}),
)
class FocalLoss(WeightedLoss):
    """Softmax focal loss; ``forward`` is :func:`weightlab.functional.focal_loss`.

    ``gamma=0`` gives ``CrossEntropyLoss(class_weight=...)`` exactly.

    Args:
        class_weight: per-class weights ``(C,)`` (the α-balancing of the paper,
            indexed by the target), a list, array, tensor or ``{index: weight}``
            mapping (with ``num_classes``). Stored as a buffer.
        gamma: focusing exponent >= 0 (default 2).
        num_classes: number of classes, to check the weights' length.
        ignore_index: class index that contributes nothing.
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"weight"`` (default) or ``"count"``.
        validate_args: run value checks that sync the device on every call.

    Example:
        >>> import torch
        >>> loss = FocalLoss(gamma=2.0, class_weight=[1.0, 3.0])
        >>> loss(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
        tensor(0.0174)
    """

    class_weight: Tensor | None

    repr_fields = ("gamma", "ignore_index")

    def __init__(
        self,
        class_weight: ClassWeightLike | None = None,
        *,
        gamma: float = 2.0,
        num_classes: int | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        normalize: Normalize | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, normalize=normalize, validate_args=validate_args)
        check_gamma(gamma)
        self.register_weight("class_weight", class_weight, num_classes=num_classes)
        self.gamma = float(gamma)
        self.ignore_index = ignore_index

    def forward(
        self, input: Tensor, target: Tensor, sample_weight: WeightLike | None = None
    ) -> Tensor | LossParts:
        """Return :func:`weightlab.functional.focal_loss` with this module's settings."""
        return focal_loss(
            input,
            target,
            gamma=self.gamma,
            class_weight=self.class_weight,
            sample_weight=sample_weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            normalize=self.normalize,
            validate_args=self.validate_args,
        )


@LOSSES.register(
    "sigmoid_focal",
    LossInfo(
        "multilabel",
        sigmoid_focal_loss,
        params={"gamma": TunableParam(2.0, 0.0, 5.0)},
        lab_excluded="sigmoid loss on 0/1 targets; the lab trains softmax classifiers",
    ),
)
class SigmoidFocalLoss(WeightedLoss):
    """Sigmoid (binary / multi-label) focal loss; see ``functional.sigmoid_focal_loss``.

    ``SigmoidFocalLoss(alpha=0.25, gamma=2, reduction="none")`` computes what
    ``torchvision.ops.sigmoid_focal_loss`` computes with the same arguments.

    Args:
        class_weight: ``[w_negative, w_positive]`` or per label ``(L, 2)``; a buffer.
        gamma: focusing exponent >= 0 (default 2).
        alpha: weight of positives in [0, 1] (negatives ``1 - alpha``), or None.
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"count"`` (default) or ``"weight"``.
        validate_args: run value checks that sync the device on every call.

    Example:
        >>> import torch
        >>> loss = SigmoidFocalLoss(alpha=0.25, gamma=2.0)
        >>> loss(torch.tensor([[3.0, -1.0]]), torch.tensor([[1.0, 0.0]]))
        tensor(0.0085)
    """

    class_weight: Tensor | None

    repr_fields = ("gamma", "alpha")

    def __init__(
        self,
        class_weight: WeightLike | None = None,
        *,
        gamma: float = 2.0,
        alpha: float | None = None,
        reduction: Reduction = "mean",
        normalize: Normalize | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, normalize=normalize, validate_args=validate_args)
        check_gamma(gamma)
        check_alpha(alpha)
        self.register_weight("class_weight", class_weight)
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)

    def forward(
        self, input: Tensor, target: Tensor, sample_weight: WeightLike | None = None
    ) -> Tensor | LossParts:
        """Return :func:`weightlab.functional.sigmoid_focal_loss` with this module's settings."""
        return sigmoid_focal_loss(
            input,
            target,
            gamma=self.gamma,
            alpha=self.alpha,
            class_weight=self.class_weight,
            sample_weight=sample_weight,
            reduction=self.reduction,
            normalize=self.normalize,
            validate_args=self.validate_args,
        )
