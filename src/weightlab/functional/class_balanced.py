r"""Class-balanced loss (Cui et al., 2019): effective-number weights on softmax, sigmoid, focal.

Cui, Jia, Lin, Song, Belongie, "Class-Balanced Loss Based on Effective Number
of Samples", CVPR 2019. Each class is weighted by the inverse of its effective
number of samples :math:`E_{n_c} = (1 - \beta^{n_c}) / (1 - \beta)`, the
weights rescaled to sum to the number of classes.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from weightlab.errors import UnknownNameError, expected, names
from weightlab.functional._imbalance import effective_number_weights, prepare_counts
from weightlab.functional._reduction import LossParts, reduce_loss, reduce_total
from weightlab.functional._sigmoid import one_hot_focal_rows
from weightlab.functional._softmax import check_class_index_input, softmax_loss
from weightlab.functional._validation import (
    Normalize,
    Reduction,
    WeightLike,
    check_normalize,
    check_probability_range,
    check_reduction,
)
from weightlab.functional.cross_entropy import (
    class_index_weights,
    compute_dtype,
    kept_count,
    prepare_class_targets,
    prepare_sample_weight,
)
from weightlab.functional.focal import check_gamma
from weightlab.weights import class_weights

__all__ = ["LOSS_TYPES", "LossType", "class_balanced_loss", "class_balanced_weights"]

LossType = Literal["softmax", "sigmoid", "focal"]
LOSS_TYPES: tuple[str, ...] = ("softmax", "sigmoid", "focal")


def check_beta(beta: float) -> None:
    """Refuse a ``beta`` outside [0, 1)."""
    check_probability_range("beta", float(beta), upper_inclusive=False)


def check_loss_type(loss_type: str) -> None:
    """Refuse a ``loss_type`` that is not one of :data:`LOSS_TYPES`."""
    if loss_type not in LOSS_TYPES:
        raise UnknownNameError(
            expected(
                "loss_type",
                f"to be one of {names(LOSS_TYPES)}",
                repr(loss_type),
                "Pick one of those (Cui et al. use 'focal' on sigmoid outputs).",
            )
        )


def class_balanced_weights(
    counts: WeightLike | None, beta: float = 0.9999, *, validate_args: bool = True
) -> Tensor:
    r"""Effective-number class weights of Cui et al. (2019), summing to the number of classes.

    .. math::
        w_c = \frac{1 - \beta}{1 - \beta^{n_c}}, \qquad
        w_c \leftarrow C\, \frac{w_c}{\sum_k w_k}

    ``beta=0`` gives uniform weights, ``beta -> 1`` inverse frequency. Computed
    by ``weightlab.weights.class_weights(counts, "effective_number",
    beta=beta, normalize="mean")`` (mean 1, i.e. sum ``C``, the paper's
    normalisation) after the counts are checked here.

    Args:
        counts: training samples per class ``(C,)``.
        beta: :math:`\beta \in [0, 1)` (the paper uses 0.9, 0.99, 0.999, 0.9999).
        validate_args: check the counts' values.

    Returns:
        A float32 tensor ``(C,)`` on the device of ``counts`` (CPU for lists).

    Raises:
        InvalidValueError: missing counts or ``beta`` outside [0, 1).
        ZeroCountError: a class with a zero count.

    Example:
        >>> class_balanced_weights([100, 10], beta=0.99)
        tensor([0.2621, 1.7379])
    """
    check_beta(beta)
    device = counts.device if isinstance(counts, Tensor) else None
    n = prepare_counts(counts, None, device=device, validate_args=validate_args)
    weights = class_weights(n.cpu().numpy(), "effective_number", beta=float(beta), normalize="mean")
    return torch.as_tensor(weights, dtype=torch.float32, device=n.device)


def class_balanced_loss(
    input: Tensor,
    target: Tensor,
    counts: WeightLike | None,
    *,
    beta: float = 0.9999,
    loss_type: LossType = "softmax",
    gamma: float = 2.0,
    sample_weight: WeightLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    normalize: Normalize | None = None,
    validate_args: bool = True,
) -> Tensor | LossParts:
    r"""Class-balanced loss (Cui et al., CVPR 2019) with class-index targets.

    With :math:`w_c` from :func:`class_balanced_weights` and sample weights :math:`s_i`:

    .. math::
        \text{softmax:}\quad l_i = -s_i w_{y_i} \log \mathrm{softmax}(x_i)_{y_i}

    .. math::
        \text{sigmoid / focal:}\quad
        l_i = s_i w_{y_i} \sum_c (1 - p_{t,ic})^\gamma \,\mathrm{BCE}(x_{ic}, [c = y_i])

    (``gamma`` only for ``"focal"``; ``"sigmoid"`` is ``gamma = 0``). As in the
    authors' code, the weight of the *target* class multiplies all ``C``
    binary terms of a sample in the sigmoid variants, and ``"mean"`` divides
    by the number of samples that are not ignored (``normalize="count"``;
    the applied weight is :math:`s_i w_{y_i}` if you choose ``"weight"``,
    which for ``"softmax"`` equals ``nn.CrossEntropyLoss(weight=w)``).
    ``reduction="none"`` gives one value per sample (summed over classes).

    The sigmoid variants run as one fused autograd Function (every class
    treated as a negative, the target column overwritten from the ``N``
    gathered target logits; closed-form gradient, no one-hot). It has no
    double backward: ``create_graph=True`` raises.

    Args:
        input: logits ``(N, C)`` or ``(N, C, d1, ..., dk)``.
        target: class indices ``(N,)`` or ``(N, d1, ..., dk)``.
        counts: training samples per class :math:`n_c`, shape ``(C,)``.
        beta: :math:`\beta \in [0, 1)` (default 0.9999).
        loss_type: ``"softmax"``, ``"sigmoid"`` or ``"focal"`` (sigmoid focal).
        gamma: focusing exponent of ``"focal"`` (default 2).
        sample_weight: weight per sample ``(N,)`` or per element.
        ignore_index: target value that contributes nothing.
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"count"`` (default, Cui et al.) or ``"weight"``.
        validate_args: run value checks that sync the device.

    Returns:
        The loss, or :class:`LossParts` with ``reduction="parts"``.

    Raises:
        InvalidValueError: missing counts, ``beta`` outside [0, 1), negative ``gamma``.
        UnknownNameError: an unknown ``loss_type``, ``reduction`` or ``normalize``.
        ZeroCountError: a class with a zero count.

    Example:
        >>> x = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> y = torch.tensor([0, 1])
        >>> class_balanced_loss(x, y, [100, 10], beta=0.99)
        tensor(0.2888)
        >>> class_balanced_loss(x, y, [100, 10], beta=0.99, loss_type="focal", gamma=2.0)
        tensor(0.1932)
    """
    check_beta(beta)
    check_loss_type(loss_type)
    check_gamma(gamma)
    check_reduction(reduction)
    check_normalize(normalize)
    check_class_index_input(input, target)
    num_classes = input.shape[1]
    dtype = compute_dtype(input)
    n = prepare_counts(counts, num_classes, device=input.device, validate_args=validate_args)
    weight = effective_number_weights(n, float(beta)).to(dtype)
    if loss_type == "softmax":
        return softmax_loss(
            input,
            target,
            class_weight=weight,
            sample_weight=sample_weight,
            ignore_index=ignore_index,
            reduction=reduction,
            normalize=normalize or "count",
            validate_args=validate_args,
        )
    index_target, all_kept = prepare_class_targets(
        target, num_classes, ignore_index, validate_args
    )
    norm: Normalize = normalize or "count"
    if all_kept:  # no mask to build: every element counts
        safe_target, applied = index_target, weight[index_target]
        counted = kept_count(index_target, True, ignore_index, dtype)
    else:
        safe_target, counted, applied = class_index_weights(
            index_target, num_classes, ignore_index, weight, dtype, False
        )
    samples = prepare_sample_weight(
        sample_weight, input, tuple(target.shape), dtype, validate_args
    )
    if samples is not None:
        applied = applied * samples
    gamma_used = float(gamma) if loss_type == "focal" else 0.0
    rows = one_hot_focal_rows(input.to(dtype), safe_target, gamma_used)
    loss = rows * applied
    if all_kept and reduction != "none":
        denominator = applied.sum() if norm == "weight" else counted
        return reduce_total(loss.sum(), denominator, reduction, input.dtype)
    return reduce_loss(loss, applied, counted, reduction, norm, input.dtype)
