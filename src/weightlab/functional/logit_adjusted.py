r"""Logit-adjusted loss (Menon et al., 2021), balanced softmax (Ren et al., 2020).

Also :func:`adjust_logits`, the post-hoc logit adjustment for inference.

Both losses add a per-class offset from the training prior to the logits
before the softmax, so the model learns balanced (prior-free) scores:

- Menon, Jayasumana, Rawat, Jain, Veit, Kumar, "Long-tail learning via logit
  adjustment", ICLR 2021: offset :math:`\tau \log \pi_c`.
- Ren, Yu, Sheng, Ma, Zhao, Yi, Li, "Balanced Meta-Softmax for Long-Tailed
  Visual Recognition", NeurIPS 2020: offset :math:`\log n_c` (the case
  :math:`\tau = 1`; a constant shift of all logits changes nothing).
"""

from __future__ import annotations

import torch  # noqa: F401  (the doctests use it)
from torch import Tensor

from weightlab.functional._imbalance import (
    check_nonnegative,
    log_prior,
    prepare_counts,
    prepare_prior,
)
from weightlab.functional._reduction import LossParts
from weightlab.functional._softmax import class_view, softmax_loss
from weightlab.functional._validation import Normalize, Reduction, WeightLike, check_logits
from weightlab.functional.cross_entropy import compute_dtype

__all__ = ["adjust_logits", "balanced_softmax_loss", "check_tau", "logit_adjusted_loss"]


def check_tau(tau: float) -> None:
    """Refuse a temperature ``tau`` that is negative, NaN or infinite."""
    check_nonnegative(
        "tau",
        tau,
        "the scale of the log-prior offset; 0 gives cross-entropy",
        "Pass tau >= 0 (Menon et al. use 1).",
    )


def _offset(
    counts: WeightLike | None,
    prior: WeightLike | None,
    input: Tensor,
    tau: float,
    validate_args: bool,
) -> Tensor:
    num_classes = input.shape[1] if input.dim() >= 2 else None
    pi = prepare_prior(
        counts, prior, num_classes, device=input.device, validate_args=validate_args
    )
    return (float(tau) * log_prior(pi)).to(compute_dtype(input))


def logit_adjusted_loss(
    input: Tensor,
    target: Tensor,
    *,
    counts: WeightLike | None = None,
    prior: WeightLike | None = None,
    tau: float = 1.0,
    class_weight: WeightLike | None = None,
    sample_weight: WeightLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    normalize: Normalize | None = None,
    validate_args: bool = True,
) -> Tensor | LossParts:
    r"""Logit-adjusted softmax cross-entropy (Menon et al., ICLR 2021).

    With training prior :math:`\pi_c = n_c / \sum_k n_k`:

    .. math::
        l_i = -s_i\, w_{y_i} \log
              \frac{e^{x_{iy_i} + \tau \log \pi_{y_i}}}{\sum_c e^{x_{ic} + \tau \log \pi_c}}

    Frequent classes get a larger offset, so the loss pushes the raw logits
    :math:`x` of rare classes up; at test time use the raw logits (they
    already estimate the balanced posterior). ``tau=0`` is exactly
    :func:`cross_entropy`. ``class_weight`` (indexed by the target) and
    ``sample_weight`` multiply as in :func:`cross_entropy`, and ``"mean"``
    divides by the sum of applied weights (``normalize="weight"``).

    Args:
        input: logits ``(N, C)`` or ``(N, C, d1, ..., dk)``.
        target: class indices ``(N,)`` or ``(N, d1, ..., dk)``.
        counts: training samples per class ``(C,)``; or give ``prior``.
        prior: class frequencies ``(C,)`` (rescaled to sum to 1); or give ``counts``.
        tau: temperature :math:`\tau \ge 0` of the offset (default 1).
        class_weight: weight of each class ``(C,)``, indexed by the target.
        sample_weight: weight per sample ``(N,)`` or per element.
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"weight"`` (default) or ``"count"``.
        validate_args: run value checks that sync the device.

    Returns:
        The loss, or :class:`LossParts` with ``reduction="parts"``.

    Raises:
        InvalidValueError: bad ``tau``; neither or both of ``counts`` and ``prior``.
        ZeroCountError: a class with a zero count or prior.
        InvalidWeightError: counts of the wrong length, negative or NaN; bad weights.

    Example:
        >>> x = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> y = torch.tensor([0, 1])
        >>> logit_adjusted_loss(x, y, counts=[90, 10])
        tensor(0.7380)
        >>> logit_adjusted_loss(x, y, counts=[90, 10], tau=0.0)
        tensor(0.2201)
    """
    check_tau(tau)
    check_logits(input)
    offset = _offset(counts, prior, input, tau, validate_args) if float(tau) != 0.0 else None
    return softmax_loss(
        input,
        target,
        class_weight=class_weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        normalize=normalize,
        validate_args=validate_args,
        offset=offset,
    )


def balanced_softmax_loss(
    input: Tensor,
    target: Tensor,
    counts: WeightLike | None,
    *,
    class_weight: WeightLike | None = None,
    sample_weight: WeightLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    normalize: Normalize | None = None,
    validate_args: bool = True,
) -> Tensor | LossParts:
    r"""Balanced softmax cross-entropy (Ren et al., NeurIPS 2020).

    .. math::
        l_i = -s_i\, w_{y_i} \log \frac{n_{y_i} e^{x_{iy_i}}}{\sum_c n_c e^{x_{ic}}}

    the softmax of :math:`x + \log n`, i.e. :func:`logit_adjusted_loss` with
    ``tau=1``. With equal counts it is exactly :func:`cross_entropy`.
    Weights and ``"mean"`` as in :func:`cross_entropy`.

    Args:
        input: logits ``(N, C)`` or ``(N, C, d1, ..., dk)``.
        target: class indices ``(N,)`` or ``(N, d1, ..., dk)``.
        counts: training samples per class :math:`n_c`, shape ``(C,)``.
        class_weight: weight of each class ``(C,)``, indexed by the target.
        sample_weight: weight per sample ``(N,)`` or per element.
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"weight"`` (default) or ``"count"``.
        validate_args: run value checks that sync the device.

    Returns:
        The loss, or :class:`LossParts` with ``reduction="parts"``.

    Raises:
        InvalidValueError: ``counts`` is None.
        ZeroCountError: a class with a zero count.
        InvalidWeightError: counts of the wrong length, negative or NaN; bad weights.

    Example:
        >>> x = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> y = torch.tensor([0, 1])
        >>> balanced_softmax_loss(x, y, [90, 10])
        tensor(0.7380)
        >>> balanced_softmax_loss(x, y, [5, 5]) == torch.nn.functional.cross_entropy(x, y)
        tensor(True)
    """
    check_logits(input)
    offset = _offset(counts, None, input, 1.0, validate_args)
    return softmax_loss(
        input,
        target,
        class_weight=class_weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        normalize=normalize,
        validate_args=validate_args,
        offset=offset,
    )


def adjust_logits(
    logits: Tensor,
    prior: WeightLike | None,
    tau: float = 1.0,
    *,
    validate_args: bool = True,
) -> Tensor:
    r"""Post-hoc logit adjustment for inference (Menon et al., ICLR 2021, eq. 9).

    .. math::
        \tilde{x}_{ic} = x_{ic} - \tau \log \pi_c

    Apply it to the logits of a model trained with plain cross-entropy; the
    argmax of :math:`\tilde{x}` is the balanced-error prediction. Do **not**
    apply it to a model trained with :func:`logit_adjusted_loss` (that one is
    already adjusted). ``prior`` may be counts: it is rescaled to sum to 1.

    Args:
        logits: ``(N, C)`` or ``(N, C, d1, ..., dk)`` (classes on dim 1), or ``(C,)``.
        prior: class frequencies or counts ``(C,)``, all positive.
        tau: :math:`\tau \ge 0` (default 1).
        validate_args: check the prior's values (syncs a device tensor).

    Returns:
        Adjusted logits, same shape and dtype as ``logits``.

    Raises:
        InvalidValueError: bad ``tau`` or a missing prior.
        ZeroCountError: a zero prior.

    Example:
        >>> x = torch.tensor([[1.0, 0.5]])
        >>> adjust_logits(x, [0.9, 0.1]).argmax(1)
        tensor([1])
    """
    check_tau(tau)
    check_logits(logits)
    num_classes = logits.shape[1] if logits.dim() >= 2 else logits.shape[0]
    pi = prepare_counts(
        prior, num_classes, device=logits.device, name="prior", validate_args=validate_args
    )
    shift = (float(tau) * log_prior(pi)).to(compute_dtype(logits))
    view = shift if logits.dim() < 2 else class_view(shift, logits.dim())
    return (logits.to(shift.dtype) - view).to(logits.dtype)
