r"""Asymmetric loss for multi-label classification (Ridnik et al., 2021).

Ridnik, Ben-Baruch, Zamir, Noy, Friedman, Protter, Zelnik-Manor, "Asymmetric
Loss For Multi-Label Classification", ICCV 2021. Positives and negatives get
their own focusing exponents, and easy negatives are discarded by a
probability margin.
"""

from __future__ import annotations

import torch
from torch import Tensor

from weightlab.functional._reduction import LossParts, reduce_loss, reduce_total
from weightlab.functional._sigmoid import (
    asymmetric_terms,
    binary_denominator,
    binary_scales,
    needs_composite,
)
from weightlab.functional._validation import (
    Normalize,
    Reduction,
    WeightLike,
    check_binary_target_values,
    check_normalize,
    check_probability_range,
    check_reduction,
    values_checked,
)
from weightlab.functional.binary import _prepare_binary_class_weight, check_binary_target
from weightlab.functional.cross_entropy import compute_dtype, prepare_sample_weight
from weightlab.functional.focal import check_gamma

__all__ = ["asymmetric_loss", "check_asymmetric_args"]


def check_asymmetric_args(gamma_neg: float, gamma_pos: float, clip: float) -> None:
    """Refuse negative focusing exponents and a ``clip`` outside [0, 1)."""
    fix = "Pass a value >= 0 (Ridnik et al. use gamma_neg=4, gamma_pos=1)."
    check_gamma(gamma_neg, "gamma_neg", fix)
    check_gamma(gamma_pos, "gamma_pos", fix)
    check_probability_range("clip", float(clip), upper_inclusive=False)


def _power_of(base: Tensor, exponent: float) -> Tensor:
    """``base ** exponent`` for ``base >= 0`` with a zero (not NaN) gradient at ``base = 0``."""
    if exponent == 0.0:
        return torch.ones_like(base)
    positive = base > 0
    safe = torch.where(positive, base, torch.ones_like(base))
    return torch.where(positive, safe.pow(exponent), torch.zeros_like(base))


def asymmetric_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma_neg: float = 4.0,
    gamma_pos: float = 1.0,
    clip: float = 0.05,
    class_weight: WeightLike | None = None,
    sample_weight: WeightLike | None = None,
    reduction: Reduction = "mean",
    normalize: Normalize | None = None,
    validate_args: bool = True,
) -> Tensor | LossParts:
    r"""Asymmetric loss (ASL, Ridnik et al., ICCV 2021) on logits, multi-label.

    With :math:`p = \sigma(x)` and the shifted probability of negatives
    :math:`p_m = \max(p - m, 0)` (``clip`` :math:`= m`):

    .. math::
        l = -s_i \big[ w^+_l\, t\, (1 - p)^{\gamma_+} \log p
            + w^-_l (1 - t)\, p_m^{\gamma_-} \log(1 - p_m) \big]

    Negatives with :math:`p \le m` contribute nothing. The applied weight is
    :math:`s_i (w^+_l t + w^-_l (1 - t))` and ``"mean"`` divides by the
    number of elements (``normalize="count"``); the authors' code returns the
    **sum** (``reduction="sum"``). Unlike their code, :math:`\log p` is a
    log-sigmoid (no ``eps=1e-8`` clamp), so logits at ±100 keep exact values
    and finite gradients. With ``gamma_neg=gamma_pos=clip=0`` it is exactly
    :func:`binary_cross_entropy`. For soft targets each term keeps its own
    factor (the authors' code mixes them through :math:`p_t`); for 0/1
    targets the two agree.

    One fused autograd Function computes the loss and its closed-form gradient
    (no double backward: ``create_graph=True`` raises); when the target or a
    weight requires grad, plain autograd ops are used instead (twice
    differentiable, gradients for the target and weights too).

    Args:
        input: logits ``(N, L)`` or ``(N, L, d1, ..., dk)`` (also ``(N,)``).
        target: floating 0/1 labels (or probabilities) of the input's shape.
        gamma_neg: focusing exponent of negatives :math:`\gamma_- \ge 0` (default 4).
        gamma_pos: focusing exponent of positives :math:`\gamma_+ \ge 0` (default 1).
        clip: probability margin :math:`m \in [0, 1)` shifting negatives (default 0.05).
        class_weight: ``[w_negative, w_positive]`` ``(2,)`` or per label ``(L, 2)``.
        sample_weight: weight per sample ``(N,)`` or per element.
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"count"`` (default) or ``"weight"``.
        validate_args: run value checks that sync the device.

    Returns:
        The loss, or :class:`LossParts` with ``reduction="parts"``.

    Raises:
        InvalidValueError: negative ``gamma_neg``/``gamma_pos``, ``clip`` outside [0, 1).
        InvalidDtypeError: integer logits or targets.
        ShapeMismatchError: target or sample weights not matching the input.
        InvalidWeightError: bad class or sample weights.
        TargetOutOfRangeError: a target outside [0, 1] (or NaN).

    Example:
        >>> x = torch.tensor([[2.0, -1.0, 0.5]])
        >>> t = torch.tensor([[1.0, 0.0, 0.0]])
        >>> asymmetric_loss(x, t, reduction="none")
        tensor([[0.0151, 0.0006, 0.0913]])
    """
    check_reduction(reduction)
    check_normalize(normalize)
    check_asymmetric_args(gamma_neg, gamma_pos, clip)
    check_binary_target(input, target)
    if values_checked(validate_args):
        check_binary_target_values(target)
    dtype = compute_dtype(input)
    logits, labels = input.to(dtype), target.to(dtype)
    classes = _prepare_binary_class_weight(class_weight, input, dtype, validate_args)
    samples = prepare_sample_weight(sample_weight, input, tuple(input.shape), dtype, validate_args)
    norm: Normalize = normalize or "count"
    if needs_composite(labels, samples, *(classes or ())):
        loss, applied = _asymmetric_composite(
            logits, labels, float(gamma_neg), float(gamma_pos), float(clip), classes
        )
        if samples is not None:
            loss = loss * samples
            applied = applied * samples
        ones = torch.ones_like(labels)
        return reduce_loss(loss, applied, ones, reduction, norm, input.dtype)
    pos_scale, neg_scale = binary_scales(None, None, classes, samples)
    reduce = reduction != "none"
    values = asymmetric_terms(
        logits,
        labels,
        pos_scale,
        neg_scale,
        float(gamma_pos),
        float(gamma_neg),
        float(clip),
        reduce,
    )
    if not reduce:
        return values.to(input.dtype)
    return reduce_total(
        values, binary_denominator(labels, pos_scale, neg_scale, norm), reduction, input.dtype
    )


def _asymmetric_composite(
    logits: Tensor,
    labels: Tensor,
    gamma_neg: float,
    gamma_pos: float,
    m: float,
    classes: tuple[Tensor, Tensor] | None,
) -> tuple[Tensor, Tensor]:
    """Per-element loss and applied weight with plain autograd ops (targets/weights get grads)."""
    log_p = torch.nn.functional.logsigmoid(logits)
    log_not_p = torch.nn.functional.logsigmoid(-logits)
    if m > 0.0:
        p_m = (torch.sigmoid(logits) - m).clamp(min=0.0)
        log_not_pm = torch.log((torch.sigmoid(-logits) + m).clamp(max=1.0))
        neg_factor = _power_of(p_m, gamma_neg)
    else:
        log_not_pm = log_not_p
        neg_factor = torch.exp(gamma_neg * log_p)
    pos_factor = torch.exp(gamma_pos * log_not_p)
    pos_scale, neg_scale = labels, 1.0 - labels
    if classes is not None:
        neg_scale = neg_scale * classes[0]
        pos_scale = pos_scale * classes[1]
    loss = -(pos_scale * pos_factor * log_p + neg_scale * neg_factor * log_not_pm)
    return loss, pos_scale + neg_scale
