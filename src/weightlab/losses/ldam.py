"""``LDAMLoss``: a module over :func:`weightlab.functional.ldam_loss`."""

from __future__ import annotations

from torch import Tensor

from weightlab.functional import LossParts, ldam_loss
from weightlab.functional._imbalance import prepare_counts
from weightlab.functional._validation import (
    Normalize,
    Reduction,
    WeightLike,
)
from weightlab.functional.ldam import check_ldam_args
from weightlab.losses._base import WeightedLoss
from weightlab.losses._registry import LOSSES, LossInfo, TunableParam
from weightlab.losses._weights import ClassWeightLike

__all__ = ["LDAMLoss"]


@LOSSES.register(
    "ldam",
    LossInfo(
        "multiclass",
        ldam_loss,
        needs_counts=True,
        head="cosine",
        params={"max_m": TunableParam(0.5, 0.1, 1.0), "s": TunableParam(30.0, 5.0, 64.0, log=True)},
        deferred_reweighting=TunableParam(0.8, 0.5, 1.0),  # Cao et al.: epoch 160 of 200
    ),
)
class LDAMLoss(WeightedLoss):
    """LDAM loss; ``forward`` is :func:`weightlab.functional.ldam_loss`.

    ``counts`` and ``class_weight`` are buffers. For deferred re-weighting,
    let a :class:`~weightlab.losses.DeferredReweighting` schedule set
    ``class_weight`` each epoch: ``schedule.apply(loss, epoch)``.

    Args:
        counts: training samples per class ``(C,)`` (checked here).
        max_m: margin of the rarest class (default 0.5).
        s: logit scale (default 30).
        class_weight: per-class weights ``(C,)`` indexed by the target.
        ignore_index: class index that contributes nothing.
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"weight"`` (default) or ``"count"``.
        validate_args: run value checks that sync the device on every call.

    Example:
        >>> import torch
        >>> loss = LDAMLoss([100, 10], max_m=0.5, s=30.0)
        >>> loss(torch.tensor([[0.9, 0.1], [0.2, 0.4]]), torch.tensor([0, 1]))
        tensor(4.5001)
    """

    counts: Tensor
    class_weight: Tensor | None

    repr_fields = ("max_m", "s", "ignore_index")

    def __init__(
        self,
        counts: WeightLike | None,
        *,
        max_m: float = 0.5,
        s: float = 30.0,
        class_weight: ClassWeightLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        normalize: Normalize | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, normalize=normalize, validate_args=validate_args)
        check_ldam_args(max_m, s)
        n = prepare_counts(counts, None).float()
        self.register_buffer("counts", n)
        self.register_weight("class_weight", class_weight, num_classes=n.numel())
        self.max_m = float(max_m)
        self.s = float(s)
        self.ignore_index = ignore_index

    def forward(
        self, input: Tensor, target: Tensor, sample_weight: WeightLike | None = None
    ) -> Tensor | LossParts:
        """Return :func:`weightlab.functional.ldam_loss` with this module's settings."""
        return ldam_loss(
            input,
            target,
            self.counts,
            max_m=self.max_m,
            s=self.s,
            class_weight=self.class_weight,
            sample_weight=sample_weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            normalize=self.normalize,
            validate_args=self.validate_args,
        )
