r"""LDAM loss (Cao et al., 2019): label-distribution-aware margins on the target logit.

Cao, Wei, Gaidon, Arechiga, Ma, "Learning Imbalanced Datasets with
Label-Distribution-Aware Margin Loss", NeurIPS 2019. Rare classes get a
larger margin :math:`m_c \propto n_c^{-1/4}`; the paper pairs it with deferred
re-weighting (:class:`weightlab.losses.DeferredReweighting`).
"""

from __future__ import annotations

import torch  # noqa: F401  (the doctests use it)
from torch import Tensor

from weightlab.functional._imbalance import check_nonnegative, check_positive, prepare_counts
from weightlab.functional._reduction import LossParts
from weightlab.functional._softmax import softmax_loss
from weightlab.functional._validation import Normalize, Reduction, WeightLike, check_logits
from weightlab.functional.cross_entropy import compute_dtype

__all__ = ["check_ldam_args", "ldam_loss", "ldam_margins", "margins_from_counts"]


def check_ldam_args(max_m: float, s: float) -> None:
    """Refuse a negative/non-finite largest margin or a non-positive/non-finite scale."""
    check_nonnegative(
        "max_m", max_m, "the largest margin, given to the rarest class", "Cao et al. use 0.5."
    )
    check_positive("s", s, "the logit scale", "Cao et al. use s=30; s=1 leaves logits as they are.")


def ldam_margins(
    counts: WeightLike | None, max_m: float = 0.5, *, validate_args: bool = True
) -> Tensor:
    r"""Per-class LDAM margins :math:`m_c = m_{max}\, n_c^{-1/4} / \max_k n_k^{-1/4}` (float64).

    The rarest class gets ``max_m``; a class with 16 times its count gets half.

    Raises:
        InvalidValueError: missing counts or a bad ``max_m``.
        ZeroCountError: a class with a zero count.

    Example:
        >>> ldam_margins([16, 1], max_m=0.5)
        tensor([0.2500, 0.5000], dtype=torch.float64)
    """
    check_ldam_args(max_m, 1.0)
    return margins_from_counts(prepare_counts(counts, None, validate_args=validate_args), max_m)


def margins_from_counts(counts: Tensor, max_m: float) -> Tensor:
    """LDAM margins of checked, positive counts (the formula of :func:`ldam_margins`)."""
    raw = counts.pow(-0.25)
    return raw * (float(max_m) / raw.max())


def ldam_loss(
    input: Tensor,
    target: Tensor,
    counts: WeightLike | None,
    *,
    max_m: float = 0.5,
    s: float = 30.0,
    class_weight: WeightLike | None = None,
    sample_weight: WeightLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    normalize: Normalize | None = None,
    validate_args: bool = True,
) -> Tensor | LossParts:
    r"""LDAM loss (Cao et al., NeurIPS 2019) on logits with class-index targets.

    With margins :math:`m_c` from :func:`ldam_margins` and scale :math:`s`:

    .. math::
        l_i = -s_i\, w_{y_i} \log
              \frac{e^{s (x_{iy_i} - m_{y_i})}}
                   {e^{s (x_{iy_i} - m_{y_i})} + \sum_{c \ne y_i} e^{s x_{ic}}}

    As in the authors' code, ``s`` multiplies every logit and the margin is
    subtracted from the target logit only (the paper assumes normalised
    features/weights, so logits are cosines in [-1, 1]). ``max_m=0, s=1`` is
    exactly :func:`cross_entropy`. ``class_weight`` is where deferred
    re-weighting puts its weights (indexed by the target); ``"mean"`` divides
    by the sum of applied weights, as PyTorch's weighted cross-entropy the
    authors call.

    Args:
        input: logits ``(N, C)`` or ``(N, C, d1, ..., dk)``.
        target: class indices ``(N,)`` or ``(N, d1, ..., dk)``.
        counts: training samples per class :math:`n_c`, shape ``(C,)``.
        max_m: margin of the rarest class (default 0.5).
        s: logit scale (default 30).
        class_weight: weight of each class ``(C,)``, indexed by the target.
        sample_weight: weight per sample ``(N,)`` or per element.
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"weight"`` (default) or ``"count"``.
        validate_args: run value checks that sync the device.

    Returns:
        The loss, or :class:`LossParts` with ``reduction="parts"``.

    Raises:
        InvalidValueError: bad ``max_m`` or ``s``; missing counts.
        ZeroCountError: a class with a zero count.
        InvalidWeightError: counts of the wrong length, negative or NaN; bad weights.

    Example:
        >>> x = torch.tensor([[0.9, 0.1], [0.2, 0.4]])
        >>> y = torch.tensor([0, 1])
        >>> ldam_loss(x, y, [100, 10], max_m=0.5, s=30.0)
        tensor(4.5001)
        >>> ldam_loss(x, y, [100, 10], max_m=0.0, s=1.0) == torch.nn.functional.cross_entropy(x, y)
        tensor(True)
    """
    check_ldam_args(max_m, s)
    check_logits(input)
    margin = None
    num_classes = input.shape[1] if input.dim() >= 2 else None
    counts_t = prepare_counts(
        counts, num_classes, device=input.device, validate_args=validate_args
    )
    if float(max_m) != 0.0:
        margin = margins_from_counts(counts_t, max_m).to(compute_dtype(input))
    return softmax_loss(
        input,
        target,
        class_weight=class_weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        normalize=normalize,
        validate_args=validate_args,
        scale=float(s),
        margin=margin,
    )

