r"""Focal loss (Lin et al., 2017): softmax multi-class and sigmoid binary / multi-label.

Lin, Goyal, Girshick, He, Dollár, "Focal Loss for Dense Object Detection",
ICCV 2017. The cross-entropy of the target is scaled by
:math:`(1 - p_t)^\gamma`, which shrinks the loss of well-classified examples.
"""

from __future__ import annotations

import torch
from torch import Tensor

from weightlab.functional._imbalance import check_nonnegative
from weightlab.functional._reduction import LossParts, reduce_loss, reduce_total
from weightlab.functional._sigmoid import (
    binary_denominator,
    binary_scales,
    needs_composite,
    sigmoid_focal_terms,
)
from weightlab.functional._softmax import focal_term, softmax_loss
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

__all__ = ["check_gamma", "focal_loss", "focal_term", "sigmoid_focal_loss"]


def check_gamma(
    gamma: float, name: str = "gamma", fix: str = "Pass a value >= 0 (Lin et al. use 2)."
) -> None:
    """Refuse a focusing parameter that is negative, NaN or infinite."""
    check_nonnegative(name, gamma, "the focusing exponent; 0 gives cross-entropy", fix)


def focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    class_weight: WeightLike | None = None,
    sample_weight: WeightLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    normalize: Normalize | None = None,
    validate_args: bool = True,
) -> Tensor | LossParts:
    r"""Softmax focal loss on logits with class-index targets (Lin et al., 2017).

    With :math:`p_t = \mathrm{softmax}(x_i)_{y_i}`, class weights :math:`w_c`
    and sample weights :math:`s_i`:

    .. math::
        l_i = -s_i\, w_{y_i} (1 - p_t)^\gamma \log p_t

    and the applied weight is :math:`s_i w_{y_i}`. ``"mean"`` divides by the sum
    of applied weights (``normalize="weight"``, as PyTorch's weighted
    cross-entropy), so ``gamma=0`` is exactly :func:`cross_entropy` with the
    same weights, value and gradient. Only :math:`p_t` of the target class is
    used (the modulating factor is per sample, not per class);
    :math:`1 - p_t` is computed as ``-expm1(log p_t)`` and the gradient is
    finite for every ``gamma >= 0``, also for ``0 < gamma < 1`` at
    :math:`p_t \to 1`.

    ``class_weight`` is the per-class :math:`\alpha_c` of the paper's
    α-balanced form: it weighs each sample by the weight of its *target*
    class. (kornia's multi-class ``alpha`` is one scalar multiplying every
    class; torchvision has no softmax focal loss.)

    Args:
        input: logits ``(N, C)`` or ``(N, C, d1, ..., dk)``; float16/bfloat16
            computed in float32.
        target: class indices ``(N,)`` or ``(N, d1, ..., dk)``.
        gamma: focusing exponent :math:`\gamma \ge 0` (default 2).
        class_weight: weight of each class ``(C,)``, indexed by the target.
        sample_weight: weight per sample ``(N,)`` or per element.
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"weight"`` (default) or ``"count"``.
        validate_args: run value checks that sync the device.

    Returns:
        The loss, or :class:`LossParts` with ``reduction="parts"``.

    Raises:
        InvalidValueError: a negative or non-finite ``gamma``.
        InvalidDtypeError: integer logits, float or probability targets.
        ShapeMismatchError: target or sample weights not matching the input.
        InvalidWeightError: bad class or sample weights.
        TargetOutOfRangeError: a class index outside ``[0, C)``.

    Example:
        >>> x = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        >>> y = torch.tensor([0, 2])
        >>> focal_loss(x, y, gamma=2.0)
        tensor(0.4872)
        >>> focal_loss(x, y, gamma=0.0, class_weight=[1.0, 1.0, 3.0])
        tensor(1.2235)
        >>> torch.nn.functional.cross_entropy(x, y, weight=torch.tensor([1.0, 1.0, 3.0]))
        tensor(1.2235)
    """
    check_gamma(gamma)
    g = float(gamma)
    return softmax_loss(
        input,
        target,
        class_weight=class_weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        normalize=normalize,
        validate_args=validate_args,
        gamma=g,
    )


def check_alpha(alpha: float | None) -> None:
    """Refuse an ``alpha`` outside [0, 1]."""
    if alpha is not None:
        check_nonnegative("alpha", alpha, "the weight of positives", "Pass a value in [0, 1].")
        check_probability_range("alpha", float(alpha))


def sigmoid_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | None = None,
    class_weight: WeightLike | None = None,
    sample_weight: WeightLike | None = None,
    reduction: Reduction = "mean",
    normalize: Normalize | None = None,
    validate_args: bool = True,
) -> Tensor | LossParts:
    r"""Sigmoid focal loss for binary and multi-label targets (Lin et al., 2017).

    With :math:`p = \sigma(x)`, target :math:`t \in [0, 1]`,
    :math:`1 - p_t = t(1 - p) + (1 - t)p`, class weights
    :math:`(w^-_l, w^+_l)` of label :math:`l` and sample weights :math:`s_i`:

    .. math::
        l = s_i (1 - p_t)^\gamma \big[ w^+_l\,\alpha\, t (-\log p)
            + w^-_l (1 - \alpha)(1 - t)(-\log(1 - p)) \big]

    ``alpha`` weighs the positive term by :math:`\alpha` and the negative term
    by :math:`1 - \alpha` (Lin et al.'s :math:`\alpha_t`, exactly as
    ``torchvision.ops.sigmoid_focal_loss``, whose default is 0.25; ``None``
    means no α weighting, i.e. both terms weigh 1, not 0.5 each).
    ``class_weight`` are real per-label negative/positive weights as in
    :func:`binary_cross_entropy`; both multiply. The applied weight is
    :math:`s_i (w^+_l \alpha t + w^-_l (1 - \alpha)(1 - t))`; ``"mean"``
    divides by the number of elements (``normalize="count"``, as BCE and
    torchvision). ``gamma=0`` with ``alpha=None`` is exactly
    :func:`binary_cross_entropy` with the same weights. :math:`1 - p_t` is
    ``lerp(sigmoid(x), sigmoid(-x), t)`` (each sigmoid exact in relative terms)
    and the BCE terms are softplus values, so values and gradients stay finite
    at any logit and any ``gamma >= 0``.

    One fused autograd Function computes the loss and its closed-form gradient
    (no double backward: ``create_graph=True`` raises); when the target or a
    weight requires grad, plain autograd ops are used instead (twice
    differentiable, gradients for the target and weights too).

    Args:
        input: logits ``(N,)``, ``(N, L)`` or ``(N, L, d1, ..., dk)``.
        target: floating 0/1 labels or probabilities of the input's shape.
        gamma: focusing exponent :math:`\gamma \ge 0`.
        alpha: weight of positives in [0, 1] (negatives get ``1 - alpha``), or None.
        class_weight: ``[w_negative, w_positive]`` ``(2,)`` or per label ``(L, 2)``.
        sample_weight: weight per sample ``(N,)`` or per element.
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"count"`` (default) or ``"weight"``.
        validate_args: run value checks that sync the device.

    Returns:
        The loss, or :class:`LossParts` with ``reduction="parts"``.

    Raises:
        InvalidValueError: bad ``gamma`` or ``alpha``.
        InvalidDtypeError: integer logits or targets.
        ShapeMismatchError: target or sample weights not matching the input.
        InvalidWeightError: bad class or sample weights.
        TargetOutOfRangeError: a target outside [0, 1] (or NaN).

    Example:
        >>> x = torch.tensor([3.0, -1.0, 0.5])
        >>> t = torch.tensor([1.0, 0.0, 0.0])
        >>> sigmoid_focal_loss(x, t, alpha=0.25, gamma=2.0, reduction="none")
        tensor([2.7321e-05, 1.6994e-02, 2.8306e-01])
    """
    check_reduction(reduction)
    check_normalize(normalize)
    check_gamma(gamma)
    check_alpha(alpha)
    check_binary_target(input, target)
    if values_checked(validate_args):
        check_binary_target_values(target)
    dtype = compute_dtype(input)
    logits, labels = input.to(dtype), target.to(dtype)
    classes = _prepare_binary_class_weight(class_weight, input, dtype, validate_args)
    samples = prepare_sample_weight(sample_weight, input, tuple(input.shape), dtype, validate_args)
    pos: float | None = None if alpha is None else float(alpha)
    neg: float | None = None if alpha is None else 1.0 - float(alpha)
    norm: Normalize = normalize or "count"
    if needs_composite(labels, samples, *(classes or ())):
        loss, applied = _sigmoid_focal_composite(logits, labels, float(gamma), pos, neg, classes)
        if samples is not None:
            loss = loss * samples
            applied = applied * samples
        ones = torch.ones_like(labels)
        return reduce_loss(loss, applied, ones, reduction, norm, input.dtype)
    pos_scale, neg_scale = binary_scales(pos, neg, classes, samples)
    reduce = reduction != "none"
    values = sigmoid_focal_terms(logits, labels, pos_scale, neg_scale, float(gamma), reduce)
    if not reduce:
        return values.to(input.dtype)
    return reduce_total(
        values, binary_denominator(labels, pos_scale, neg_scale, norm), reduction, input.dtype
    )


def _sigmoid_focal_composite(
    logits: Tensor,
    labels: Tensor,
    gamma: float,
    pos: float | None,
    neg: float | None,
    classes: tuple[Tensor, Tensor] | None,
) -> tuple[Tensor, Tensor]:
    """Per-element loss and applied weight with plain autograd ops (targets/weights get grads)."""
    log_p = torch.nn.functional.logsigmoid(logits)
    log_not_p = torch.nn.functional.logsigmoid(-logits)
    pos_scale = labels
    neg_scale = 1.0 - labels
    if pos is not None and neg is not None:
        pos_scale = pos_scale * pos
        neg_scale = neg_scale * neg
    if classes is not None:
        neg_scale = neg_scale * classes[0]
        pos_scale = pos_scale * classes[1]
    loss = -(pos_scale * log_p + neg_scale * log_not_p)
    if gamma != 0.0:
        log_one_minus_pt = torch.logaddexp(
            torch.log(labels) + log_not_p, torch.log1p(-labels) + log_p
        )
        loss = loss * torch.exp(gamma * log_one_minus_pt)
    return loss, pos_scale + neg_scale
