"""Weight schedules a training loop calls once per epoch (deferred re-weighting)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from weightlab.errors import InvalidValueError, expected
from weightlab.functional._imbalance import prepare_counts
from weightlab.functional._validation import WeightLike
from weightlab.functional.class_balanced import check_beta
from weightlab.weights import class_weights

__all__ = ["DeferredReweighting"]


class DeferredReweighting:
    r"""Deferred re-weighting (DRW, Cao et al., NeurIPS 2019): uniform, then class-balanced.

    .. math::
        w_c(e) = \begin{cases} 1 & e < e_0 \\
                 C \dfrac{(1 - \beta) / (1 - \beta^{n_c})}
                 {\sum_k (1 - \beta) / (1 - \beta^{n_k})} & e \ge e_0 \end{cases}

    Cao et al. train with uniform weights, then switch to the effective-number
    weights of Cui et al. (``beta=0.9999``) at ``start_epoch`` (160 of 200 on
    CIFAR). Epochs count from 0. The late weights are
    ``weightlab.weights.class_weights(counts, "effective_number", beta=beta,
    normalize="mean")``.

    Args:
        counts: training samples per class ``(C,)`` (checked here).
        start_epoch: first epoch (0-based) that uses the class-balanced weights.
        beta: :math:`\beta \in [0, 1)` of the late weights (default 0.9999).

    Example:
        >>> schedule = DeferredReweighting([100, 10], start_epoch=2, beta=0.99)
        >>> schedule.weights(1)
        tensor([1., 1.])
        >>> schedule.weights(2)
        tensor([0.2621, 1.7379])
    """

    def __init__(self, counts: WeightLike | None, *, start_epoch: int, beta: float = 0.9999):
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise InvalidValueError(
                expected(
                    "start_epoch",
                    "to be an integer >= 0 (the first epoch with class-balanced weights)",
                    repr(start_epoch),
                    "Pass e.g. start_epoch=160 for a 200-epoch run, as Cao et al.",
                )
            )
        check_beta(beta)
        self.counts = prepare_counts(counts, None).float()
        self.start_epoch = start_epoch
        self.beta = float(beta)
        late = class_weights(
            self.counts.numpy(), "effective_number", beta=self.beta, normalize="mean"
        )
        self._late = torch.as_tensor(late, dtype=torch.float32)

    def weights(self, epoch: int) -> Tensor:
        """Return the class weights (float32, CPU, shape ``(C,)``) for ``epoch``."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise InvalidValueError(
                expected("epoch", "to be an integer >= 0", repr(epoch), "Count epochs from 0.")
            )
        if epoch < self.start_epoch:
            return self.counts.new_ones(self.counts.shape)
        return self._late.clone()

    def apply(self, loss: nn.Module, epoch: int) -> Tensor:
        """Set ``loss.class_weight`` (a buffer) to :meth:`weights` on the loss's device.

        Example:
            >>> from weightlab.losses import LDAMLoss
            >>> loss = LDAMLoss([100, 10])
            >>> DeferredReweighting([100, 10], start_epoch=0, beta=0.99).apply(loss, 0)
            tensor([0.2621, 1.7379])
            >>> loss.class_weight
            tensor([0.2621, 1.7379])
        """
        if "class_weight" not in loss._buffers:
            raise InvalidValueError(
                expected(
                    "loss",
                    "to have a `class_weight` buffer",
                    type(loss).__name__,
                    "Use a weightlab loss that takes class_weight (e.g. LDAMLoss, "
                    "CrossEntropyLoss, FocalLoss).",
                )
            )
        buffers = [b for b in loss.buffers()]
        device = buffers[0].device if buffers else self.counts.device
        weight = self.weights(epoch).to(device)
        loss.class_weight = weight
        return weight

    def __repr__(self) -> str:
        return (
            f"DeferredReweighting(num_classes={self.counts.numel()}, "
            f"start_epoch={self.start_epoch}, beta={self.beta})"
        )
