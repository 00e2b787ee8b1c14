"""``LogitAdjustedLoss`` and ``BalancedSoftmaxLoss``: modules over the functional losses."""

from __future__ import annotations

from torch import Tensor, nn

from weightlab.functional import LossParts, balanced_softmax_loss, logit_adjusted_loss
from weightlab.functional._imbalance import prepare_counts, prepare_prior
from weightlab.functional._validation import (
    Normalize,
    Reduction,
    WeightLike,
    check_normalize,
    check_reduction,
)
from weightlab.functional.logit_adjusted import check_tau
from weightlab.losses._registry import LOSSES
from weightlab.losses._weights import ClassWeightLike, to_weight_tensor

__all__ = ["BalancedSoftmaxLoss", "LogitAdjustedLoss"]


def _optional_weight(value: ClassWeightLike | None, num_classes: int) -> Tensor | None:
    if value is None:
        return None
    return to_weight_tensor(value, name="class_weight", num_classes=num_classes)


@LOSSES.register("logit_adjusted")
class LogitAdjustedLoss(nn.Module):
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
        super().__init__()
        check_tau(tau)
        check_reduction(reduction)
        check_normalize(normalize)
        pi = prepare_prior(counts, prior, None).float()
        self.register_buffer("prior", pi)
        self.register_buffer("class_weight", _optional_weight(class_weight, pi.numel()))
        self.tau = float(tau)
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction
        self.normalize: Normalize | None = normalize
        self.validate_args = validate_args

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

    def extra_repr(self) -> str:
        """Show the settings in ``repr(module)``."""
        return (
            f"tau={self.tau}, reduction={self.reduction!r}, normalize={self.normalize!r}, "
            f"ignore_index={self.ignore_index}"
        )


@LOSSES.register("balanced_softmax")
class BalancedSoftmaxLoss(nn.Module):
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
        super().__init__()
        check_reduction(reduction)
        check_normalize(normalize)
        n = prepare_counts(counts, None).float()
        self.register_buffer("counts", n)
        self.register_buffer("class_weight", _optional_weight(class_weight, n.numel()))
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction
        self.normalize: Normalize | None = normalize
        self.validate_args = validate_args

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

    def extra_repr(self) -> str:
        """Show the settings in ``repr(module)``."""
        return (
            f"reduction={self.reduction!r}, normalize={self.normalize!r}, "
            f"ignore_index={self.ignore_index}"
        )
