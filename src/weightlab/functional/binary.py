"""Sigmoid binary / multi-label cross-entropy with real class weights and ``pos_weight``."""

from __future__ import annotations

from typing import Literal, overload

import torch
from torch import Tensor

from weightlab.errors import InvalidDtypeError, InvalidWeightError, ShapeMismatchError, expected
from weightlab.functional._reduction import LossParts, reduce_loss
from weightlab.functional._validation import (
    Normalize,
    Reduction,
    WeightLike,
    as_weight,
    check_binary_target_values,
    check_logits,
    check_normalize,
    check_reduction,
    check_target,
    check_weight_values,
    needs_composite,
    shape_str,
    values_checked,
)
from weightlab.functional.cross_entropy import compute_dtype, prepare_sample_weight

__all__ = ["binary_cross_entropy", "binary_terms", "check_binary_target"]


def check_binary_target(input: Tensor, target: Tensor) -> None:
    """Refuse binary targets that are not floating or not of the input's shape."""
    check_logits(input)
    check_target(target, input, convert="torch.as_tensor(labels, dtype=torch.float32)")
    if input.dim() == 0:
        raise ShapeMismatchError(
            expected(
                "input",
                "to have shape (N,), (N, L) or (N, L, d1, ..., dk)",
                "a 0-d tensor",
                "Pass one logit per sample (and per label).",
            )
        )
    if not target.is_floating_point():
        raise InvalidDtypeError(
            expected(
                "target",
                "to hold floating-point 0/1 labels or probabilities",
                f"dtype {target.dtype}",
                "Call `target.float()`; for class indices of a multi-class problem, "
                "use `cross_entropy`.",
            )
        )
    if tuple(target.shape) != tuple(input.shape):
        raise ShapeMismatchError(
            expected(
                "target",
                f"to have the input's shape {shape_str(input.shape)}",
                f"shape {shape_str(target.shape)}",
                "Give one label per logit; reshape a (N, 1) column with `.view(-1)` "
                "(weightlab never broadcasts targets).",
            )
        )


def _label_view(weight: Tensor, ndim: int) -> Tensor:
    """Shape a per-label (L,) vector to broadcast along dim 1 of (N, L, d1, ..., dk)."""
    if ndim == 1:
        return weight.reshape(())
    return weight.view((1, -1) + (1,) * (ndim - 2))


def _pos_weight_layouts(labels: int, ndim: int) -> list[tuple[int, ...]]:
    """PyTorch's class-dimension layouts of ``pos_weight`` for an input of ``ndim`` dims.

    PyTorch broadcasts ``pos_weight`` against the target from the right, so a
    weight that varies along dim 1 only is ``(L, 1, ..., 1)`` (``ndim - 1``
    dims, the layout its docs give for ``(N, C, H, W)``: ``(C, 1, 1)``) or
    ``(1, L, 1, ..., 1)`` (``ndim`` dims; ``(1, L)`` for a 2-D input).
    """
    if ndim < 2:
        return []
    ones = (1,) * (ndim - 2)
    layouts = [(labels, *ones), (1, labels, *ones)]
    return [s for s in layouts if len(s) >= 2]


def _prepare_pos_weight(
    pos_weight: WeightLike | None, input: Tensor, dtype: torch.dtype, validate_args: bool
) -> Tensor | None:
    if pos_weight is None:
        return None
    weight = as_weight("pos_weight", pos_weight, input, dtype)
    labels = 1 if input.dim() == 1 else input.shape[1]
    shape = tuple(weight.shape)
    layouts = _pos_weight_layouts(labels, input.dim())
    if weight.dim() <= 1 and weight.numel() in (1, labels):
        pass  # (), (1,) or weightlab's (L,) along dim 1
    elif shape in layouts or (weight.dim() <= input.dim() and weight.numel() == 1):
        weight = weight.reshape(-1)  # PyTorch's layouts: the same numbers along dim 1
    else:
        shapes = (
            f"(), (1,), ({labels},) (one entry per label) or PyTorch's per-label layout "
            + " or ".join(shape_str(s) for s in layouts)
            if layouts
            else "() or (1,) (one weight: the input has one label per sample)"
        )
        raise InvalidWeightError(
            expected(
                "pos_weight",
                f"to have shape {shapes} for input of shape {shape_str(input.shape)}",
                f"shape {shape_str(weight.shape)}",
                "Pass one positive-class weight per label (dim 1 of the input); PyTorch "
                "aligns other shapes with the input's last axes, which weightlab does not "
                "support. `weightlab.weights.pos_weight(counts)` computes negatives/positives.",
            )
        )
    if values_checked(validate_args):
        check_weight_values("pos_weight", weight, allow_all_zero=True)
    return _label_view(weight.expand(labels) if weight.numel() == 1 else weight, input.dim())


def _prepare_binary_class_weight(
    class_weight: WeightLike | None, input: Tensor, dtype: torch.dtype, validate_args: bool
) -> tuple[Tensor, Tensor] | None:
    """Split a ``(2,)`` or per-label ``(L, 2)`` weight into negative and positive views."""
    if class_weight is None:
        return None
    weight = as_weight("class_weight", class_weight, input, dtype)
    labels = 1 if input.dim() == 1 else input.shape[1]
    allowed = [(2,)] if input.dim() == 1 else [(2,), (labels, 2)]
    if tuple(weight.shape) not in allowed:
        shapes = " or ".join(shape_str(s) for s in allowed)
        raise InvalidWeightError(
            expected(
                "class_weight",
                f"to have shape {shapes} ([negative, positive] weight"
                f"{'' if input.dim() == 1 else ', shared or per label'})",
                f"shape {shape_str(weight.shape)}",
                "Pass [w_negative, w_positive]"
                + ("." if input.dim() == 1 else f", or a ({labels}, 2) tensor, a row per label."),
            )
        )
    if values_checked(validate_args):
        check_weight_values("class_weight", weight)
    if weight.dim() == 1:
        weight = weight.expand(labels, 2)
    return _label_view(weight[:, 0], input.dim()), _label_view(weight[:, 1], input.dim())


def binary_terms(input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``(-t log sigma(x), -(1 - t) log(1 - sigma(x)))``, stable for any logit."""
    return -target * torch.nn.functional.logsigmoid(input), -(
        1.0 - target
    ) * torch.nn.functional.logsigmoid(-input)


@overload
def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    class_weight: WeightLike | None = ...,
    pos_weight: WeightLike | None = ...,
    sample_weight: WeightLike | None = ...,
    reduction: Literal["mean", "sum", "none"] = ...,
    normalize: Normalize | None = ...,
    validate_args: bool = ...,
) -> Tensor: ...


@overload
def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    class_weight: WeightLike | None = ...,
    pos_weight: WeightLike | None = ...,
    sample_weight: WeightLike | None = ...,
    reduction: Literal["parts"],
    normalize: Normalize | None = ...,
    validate_args: bool = ...,
) -> LossParts: ...


def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    class_weight: WeightLike | None = None,
    pos_weight: WeightLike | None = None,
    sample_weight: WeightLike | None = None,
    reduction: Reduction = "mean",
    normalize: Normalize | None = None,
    validate_args: bool = True,
) -> Tensor | LossParts:
    r"""Sigmoid cross-entropy on logits for binary and multi-label targets.

    With target :math:`t \in [0, 1]`, class weights :math:`(w^-_l, w^+_l)` of
    label :math:`l`, positive weight :math:`p_l` and sample weight :math:`s_i`:

    .. math::
        l_{il} = s_i \big[ w^+_l\, p_l\, t_{il} (-\log \sigma(x_{il}))
                 + w^-_l (1 - t_{il}) (-\log(1 - \sigma(x_{il}))) \big]

    and the applied weight is :math:`s_i (w^+_l p_l t_{il} + w^-_l (1 - t_{il}))`.
    ``class_weight`` weighs negatives and positives (PyTorch has no such
    argument; its ``weight=`` is our per-element ``sample_weight``).
    ``pos_weight`` is PyTorch's: it scales only the positive term, and by
    default (``normalize="count"``, PyTorch's convention) ``"mean"`` divides by
    the number of elements, not by any weight. A per-label ``(L,)`` vector
    applies along dim 1 (PyTorch broadcasts it over the *last* axis instead);
    PyTorch's own per-label layouts, ``(L, 1, ..., 1)`` (its ``(C, 1, 1)`` for
    ``(N, C, H, W)``) and ``(1, L, 1, ..., 1)``, give PyTorch's numbers. Shapes
    that PyTorch would apply along other axes are refused.

    An empty batch gives a loss of 0 with a zero gradient (PyTorch gives NaN).

    Args:
        input: logits of shape ``(N,)`` (binary), ``(N, L)`` or ``(N, L, d1, ..., dk)``
            (multi-label). float16/bfloat16 are computed in float32.
        target: floating 0/1 labels or probabilities of the input's shape.
        class_weight: ``[w_negative, w_positive]`` of shape ``(2,)``, or one row
            per label ``(L, 2)``.
        pos_weight: weight of the positive term, ``()``, ``(1,)``, ``(L,)``, or
            PyTorch's ``(L, 1, ..., 1)`` / ``(1, L, 1, ..., 1)`` (one dim fewer / as
            many dims as the input).
        sample_weight: weight per sample ``(N,)`` or per element (the input's shape).
        reduction: ``"mean"``, ``"sum"``, ``"none"`` or ``"parts"``.
        normalize: ``"count"`` (default, number of elements) or ``"weight"``
            (sum of applied weights); ``None`` means ``"count"``.
        validate_args: run value checks that sync the device.

    Returns:
        The loss, or :class:`LossParts` with ``reduction="parts"``.

    Raises:
        InvalidDtypeError: integer/boolean logits or targets.
        ShapeMismatchError: target or sample weights not matching the input.
        InvalidWeightError: weights of a wrong shape, negative, NaN, inf or all zero.
        TargetOutOfRangeError: a target outside [0, 1] (or NaN).
        DeviceMismatchError: a weight or target on another device than ``input``.
        UnknownNameError: an unknown ``reduction`` or ``normalize``.

    Example:
        >>> x = torch.tensor([1.0, -2.0, 0.5])
        >>> t = torch.tensor([1.0, 0.0, 0.0])
        >>> binary_cross_entropy(x, t, pos_weight=torch.tensor(3.0))
        tensor(0.6803)
        >>> torch.nn.functional.binary_cross_entropy_with_logits(x, t, pos_weight=torch.tensor(3.0))
        tensor(0.6803)
        >>> binary_cross_entropy(x, t, class_weight=[1.0, 3.0], normalize="weight")
        tensor(0.4082)
    """
    check_reduction(reduction)
    check_normalize(normalize)
    check_binary_target(input, target)
    if values_checked(validate_args):
        check_binary_target_values(target)
    dtype = compute_dtype(input)
    logits, labels = input.to(dtype), target.to(dtype)
    pos_scale = _prepare_pos_weight(pos_weight, input, dtype, validate_args)
    classes = _prepare_binary_class_weight(class_weight, input, dtype, validate_args)
    samples = prepare_sample_weight(sample_weight, input, tuple(input.shape), dtype, validate_args)
    if (
        classes is None
        and (reduction == "none" or normalize != "weight")
        and input.numel() > 0
        and not needs_composite(pos_scale, samples)  # the kernel has no weight gradients
    ):
        # PyTorch's fused kernel computes exactly our per-element term here:
        # s * [p t (-log sigma(x)) + (1 - t)(-log(1 - sigma(x)))], and its "mean"
        # divides by the number of elements, our normalize="count".
        fused = "sum" if reduction == "parts" else reduction
        out = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, labels, weight=samples, pos_weight=pos_scale, reduction=fused
        )
        if reduction == "parts":
            count = torch.tensor(float(input.numel()), dtype=dtype, device=input.device)
            return LossParts(out, count)
        return out.to(input.dtype)
    positive, negative = binary_terms(logits, labels)
    w_pos = pos_scale if classes is None else (
        classes[1] if pos_scale is None else classes[1] * pos_scale
    )
    w_neg = None if classes is None else classes[0]
    if w_pos is not None:
        positive = positive * w_pos
    if w_neg is not None:
        negative = negative * w_neg
    loss = positive + negative
    ones = torch.ones_like(labels)
    applied = (labels if w_pos is None else labels * w_pos) + (
        (1.0 - labels) if w_neg is None else (1.0 - labels) * w_neg
    )
    if samples is not None:
        loss = loss * samples
        applied = applied * samples
    return reduce_loss(loss, applied, ones, reduction, normalize or "count", input.dtype)
