r"""The one reduction every loss shares, and the ``LossParts`` it can hand back.

Every loss computes, per element, a weighted loss ``l_i`` and the weight that
applied to it ``w_i`` (and whether it counted at all, ``m_i`` = not ignored).
Then

.. math::
    \text{sum} = \sum_i l_i, \qquad
    \text{mean} = \frac{\sum_i l_i}{\sum_i w_i} \;(\text{normalize='weight'})
    \quad\text{or}\quad \frac{\sum_i l_i}{\sum_i m_i} \;(\text{normalize='count'})

A zero denominator (empty batch, every element ignored, every weight zero)
gives a loss of 0 with a zero gradient instead of PyTorch's NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from weightlab.functional._validation import Normalize, Reduction

__all__ = ["LossParts", "reduce_loss", "reduce_total"]


class LossParts(NamedTuple):
    """A weighted loss sum and the normaliser that ``reduction="mean"`` divides it by.

    Accumulate both over micro-batches or data-parallel ranks and divide once,
    so the result equals the mean over the whole (global) batch.

    Example:
        >>> parts = LossParts(torch.tensor(6.0), torch.tensor(3.0))
        >>> parts.mean()
        tensor(2.)
        >>> (parts + LossParts(torch.tensor(0.0), torch.tensor(1.0))).mean()
        tensor(1.5000)
    """

    total: Tensor
    normalizer: Tensor

    def mean(self) -> Tensor:
        """Return ``total / normalizer``, or 0 (with zero gradient) when the normaliser is 0."""
        return safe_divide(self.total, self.normalizer)

    def __add__(self, other: object) -> LossParts:
        """Add two parts field by field (summing micro-batches)."""
        if not isinstance(other, LossParts):
            return NotImplemented
        return LossParts(self.total + other.total, self.normalizer + other.normalizer)


def safe_divide(total: Tensor, denominator: Tensor) -> Tensor:
    """``total / denominator``, but 0 with a zero gradient where the denominator is 0."""
    positive = denominator > 0
    safe = torch.where(positive, denominator, torch.ones_like(denominator))
    return torch.where(positive, total / safe, total * 0.0)


def reduce_loss(
    loss: Tensor,
    weight: Tensor,
    count: Tensor,
    reduction: Reduction,
    normalize: Normalize,
    out_dtype: torch.dtype,
) -> Tensor | LossParts:
    """Reduce per-element losses ``loss`` with their applied weights and not-ignored mask.

    Args:
        loss: per-element weighted losses (already zero where ignored).
        weight: per-element weight that applied (zero where ignored), same shape as ``loss``.
        count: per-element 1 where not ignored, same shape (or broadcastable scalar).
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: what ``"mean"`` divides by: ``"weight"`` or ``"count"``.
        out_dtype: dtype of the returned loss (the input's dtype).
    """
    if reduction == "none":
        return loss.to(out_dtype)
    total = loss.sum()
    if reduction == "sum":
        return total.to(out_dtype)
    denominator = weight.sum() if normalize == "weight" else count.sum().to(total.dtype)
    if reduction == "parts":
        return LossParts(total, denominator)
    return safe_divide(total, denominator).to(out_dtype)


def reduce_total(
    total: Tensor, denominator: Tensor, reduction: Reduction, out_dtype: torch.dtype
) -> Tensor | LossParts:
    """Finish ``"sum"``, ``"mean"`` or ``"parts"`` from an already summed loss.

    Same results as :func:`reduce_loss` for a loss whose sum and normaliser a
    fused kernel computed (``total`` = the sum of ``loss``, ``denominator`` =
    the sum of ``weight`` or ``count``).
    """
    if reduction == "sum":
        return total.to(out_dtype)
    if reduction == "parts":
        return LossParts(total, denominator)
    return safe_divide(total, denominator).to(out_dtype)
