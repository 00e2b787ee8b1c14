"""``LogitAdjustedLoss`` and ``BalancedSoftmaxLoss``: modules over the functional losses."""

from __future__ import annotations

from torch import Tensor

from weightlab.functional import LossParts, balanced_softmax_loss, logit_adjusted_loss
from weightlab.functional._imbalance import prepare_counts, prepare_prior
from weightlab.functional._validation import (
    Normalize,
    Reduction,
    WeightLike,
)
from weightlab.functional.logit_adjusted import check_tau
from weightlab.losses._base import WeightedLoss
from weightlab.losses._registry import LOSSES, LossInfo, TunableParam
from weightlab.losses._weights import ClassWeightLike

__all__ = ["BalancedSoftmaxLoss", "LogitAdjustedLoss"]


@LOSSES.register(
    "logit_adjusted",
    LossInfo(
        "multiclass",
        logit_adjusted_loss,
        needs_counts=True,
        params={"tau": TunableParam(1.0, 0.0, 3.0)},
    ),
)
class LogitAdjustedLoss(WeightedLoss):
    """Logit-adjusted cross-entropy; ``forward`` is ``functional.logit_adjusted_loss``.

    The prior (from ``counts`` or ``prior``, checked here once) is the buffer ``prior``.

    Args:
        counts: training samples per class ``(C,)``; or give ``prior``.
        prior: class frequencies ``(C,)``; or give ``counts``.
        tau: temperature >= 0 of the offset (default 1; 0 is cross-entropy).
        class_weight: per-class weights ``(C,)`` indexed by the target; a buffer.
        ignore_index: class index that contributes nothing.
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"weight"`` (default) or ``"count"``.
        validate_args: run value checks that sync the device on every call.

    Example:
        >>> import torch
        >>> loss = LogitAdjustedLoss(counts=[90, 10], tau=1.0)
        >>> loss.prior
        tensor([0.9000, 0.1000])
        >>> loss(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
        tensor(0.7380)
    """

    prior: Tensor
    class_weight: Tensor | None

    repr_fields = ("tau", "ignore_index")

    def __init__(
        self,
        counts: WeightLike | None = None,
        *,
        prior: WeightLike | None = None,
        tau: float = 1.0,
        class_weight: ClassWeightLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        normalize: Normalize | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, normalize=normalize, validate_args=validate_args)
        check_tau(tau)
        pi = prepare_prior(counts, prior, None).float()
        self.register_buffer("prior", pi)
        self.register_weight("class_weight", class_weight, num_classes=pi.numel())
        self.tau = float(tau)
        self.ignore_index = ignore_index

    def forward(
        self, input: Tensor, target: Tensor, sample_weight: WeightLike | None = None
    ) -> Tensor | LossParts:
        """Return :func:`weightlab.functional.logit_adjusted_loss` with these settings."""
        return logit_adjusted_loss(
            input,
            target,
            prior=self.prior,
            tau=self.tau,
            class_weight=self.class_weight,
            sample_weight=sample_weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            normalize=self.normalize,
            validate_args=self.validate_args,
        )


@LOSSES.register(
    "balanced_softmax",
    LossInfo("multiclass", balanced_softmax_loss, needs_counts=True),
)
class BalancedSoftmaxLoss(WeightedLoss):
    """Balanced softmax cross-entropy; ``forward`` is ``functional.balanced_softmax_loss``.

    Args:
        counts: training samples per class ``(C,)`` (checked here; a buffer).
        class_weight: per-class weights ``(C,)`` indexed by the target; a buffer.
        ignore_index: class index that contributes nothing.
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"weight"`` (default) or ``"count"``.
        validate_args: run value checks that sync the device on every call.

    Example:
        >>> import torch
        >>> loss = BalancedSoftmaxLoss([90, 10])
        >>> loss(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
        tensor(0.7380)
    """

    counts: Tensor
    class_weight: Tensor | None

    repr_fields = ("ignore_index",)

    def __init__(
        self,
        counts: WeightLike | None,
        *,
        class_weight: ClassWeightLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        normalize: Normalize | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, normalize=normalize, validate_args=validate_args)
        n = prepare_counts(counts, None).float()
        self.register_buffer("counts", n)
        self.register_weight("class_weight", class_weight, num_classes=n.numel())
        self.ignore_index = ignore_index

    def forward(
        self, input: Tensor, target: Tensor, sample_weight: WeightLike | None = None
    ) -> Tensor | LossParts:
        """Return :func:`weightlab.functional.balanced_softmax_loss` with these settings."""
        return balanced_softmax_loss(
            input,
            target,
            self.counts,
            class_weight=self.class_weight,
            sample_weight=sample_weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            normalize=self.normalize,
            validate_args=self.validate_args,
        )
