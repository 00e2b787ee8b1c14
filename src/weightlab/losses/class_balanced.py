"""``ClassBalancedLoss``: a module over :func:`weightlab.functional.class_balanced_loss`."""

from __future__ import annotations

from torch import Tensor

from weightlab.functional import LossParts, class_balanced_loss
from weightlab.functional._imbalance import prepare_counts
from weightlab.functional._validation import (
    Normalize,
    Reduction,
    WeightLike,
)
from weightlab.functional.class_balanced import LossType, check_beta, check_loss_type
from weightlab.functional.focal import check_gamma
from weightlab.losses._base import WeightedLoss
from weightlab.losses._registry import LOSSES, LossInfo, TunableParam

__all__ = ["ClassBalancedLoss"]


@LOSSES.register(
    "class_balanced",
    LossInfo(
        "multiclass",
        class_balanced_loss,
        needs_counts=True,
        class_weight="sample_weight",
        params={"beta": TunableParam(0.9999, 0.9, 0.99999, log_complement=True)},
    ),
)
class ClassBalancedLoss(WeightedLoss):
    """Class-balanced loss; ``forward`` is :func:`weightlab.functional.class_balanced_loss`.

    Args:
        counts: training samples per class ``(C,)`` (checked here; a buffer).
        beta: in [0, 1) (default 0.9999).
        loss_type: ``"softmax"``, ``"sigmoid"`` or ``"focal"``.
        gamma: focusing exponent of ``"focal"`` (default 2).
        ignore_index: class index that contributes nothing.
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"count"`` (default, Cui et al.) or ``"weight"``.
        validate_args: run value checks that sync the device on every call.

    Example:
        >>> import torch
        >>> loss = ClassBalancedLoss([100, 10], beta=0.99, loss_type="focal")
        >>> loss(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
        tensor(0.1932)
    """

    counts: Tensor

    repr_fields = ("beta", "loss_type", "gamma", "ignore_index")

    def __init__(
        self,
        counts: WeightLike | None,
        *,
        beta: float = 0.9999,
        loss_type: LossType = "softmax",
        gamma: float = 2.0,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        normalize: Normalize | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, normalize=normalize, validate_args=validate_args)
        check_beta(beta)
        check_loss_type(loss_type)
        check_gamma(gamma)
        self.register_buffer("counts", prepare_counts(counts, None).float())
        self.beta = float(beta)
        self.loss_type: LossType = loss_type
        self.gamma = float(gamma)
        self.ignore_index = ignore_index

    def forward(
        self, input: Tensor, target: Tensor, sample_weight: WeightLike | None = None
    ) -> Tensor | LossParts:
        """Return :func:`weightlab.functional.class_balanced_loss` with these settings."""
        return class_balanced_loss(
            input,
            target,
            self.counts,
            beta=self.beta,
            loss_type=self.loss_type,
            gamma=self.gamma,
            sample_weight=sample_weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            normalize=self.normalize,
            validate_args=self.validate_args,
        )
