"""``AsymmetricLoss``: a module over :func:`weightlab.functional.asymmetric_loss`."""

from __future__ import annotations

from torch import Tensor

from weightlab.functional import LossParts, asymmetric_loss
from weightlab.functional._validation import (
    Normalize,
    Reduction,
    WeightLike,
)
from weightlab.functional.asymmetric import check_asymmetric_args
from weightlab.losses._base import WeightedLoss
from weightlab.losses._registry import LOSSES, LossInfo, TunableParam

__all__ = ["AsymmetricLoss"]


@LOSSES.register(
    "asymmetric",
    LossInfo(
        "multilabel",
        asymmetric_loss,
        params={"gamma_neg": TunableParam(4.0, 0.0, 8.0), "gamma_pos": TunableParam(1.0, 0.0, 4.0)},
        lab_excluded="multi-label (0/1 targets per label); the lab trains single-label classifiers",
    ),
)
class AsymmetricLoss(WeightedLoss):
    """Asymmetric multi-label loss; ``forward`` is ``functional.asymmetric_loss``.

    Args:
        class_weight: ``[w_negative, w_positive]`` or per label ``(L, 2)``; a buffer.
        gamma_neg: focusing exponent of negatives (default 4).
        gamma_pos: focusing exponent of positives (default 1).
        clip: probability margin shifting negatives, in [0, 1) (default 0.05).
        reduction: ``"mean"``, ``"sum"`` (the authors' choice), ``"none"`` or ``"parts"``.
        normalize: ``"count"`` (default) or ``"weight"``.
        validate_args: run value checks that sync the device on every call.

    Example:
        >>> import torch
        >>> loss = AsymmetricLoss(reduction="sum")
        >>> loss(torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([[1.0, 0.0, 0.0]]))
        tensor(0.1070)
    """

    class_weight: Tensor | None

    repr_fields = ("gamma_neg", "gamma_pos", "clip")

    def __init__(
        self,
        class_weight: WeightLike | None = None,
        *,
        gamma_neg: float = 4.0,
        gamma_pos: float = 1.0,
        clip: float = 0.05,
        reduction: Reduction = "mean",
        normalize: Normalize | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, normalize=normalize, validate_args=validate_args)
        check_asymmetric_args(gamma_neg, gamma_pos, clip)
        self.register_weight("class_weight", class_weight)
        self.gamma_neg = float(gamma_neg)
        self.gamma_pos = float(gamma_pos)
        self.clip = float(clip)

    def forward(
        self, input: Tensor, target: Tensor, sample_weight: WeightLike | None = None
    ) -> Tensor | LossParts:
        """Return :func:`weightlab.functional.asymmetric_loss` with this module's settings."""
        return asymmetric_loss(
            input,
            target,
            gamma_neg=self.gamma_neg,
            gamma_pos=self.gamma_pos,
            clip=self.clip,
            class_weight=self.class_weight,
            sample_weight=sample_weight,
            reduction=self.reduction,
            normalize=self.normalize,
            validate_args=self.validate_args,
        )
