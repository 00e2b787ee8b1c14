"""Softmax cross-entropy with explicit class weights, sample weights and normalisation."""

from __future__ import annotations

from typing import Literal, overload

import torch
from torch import Tensor

from weightlab.errors import InvalidDtypeError, ShapeMismatchError, expected
from weightlab.functional._reduction import LossParts, reduce_loss, reduce_total
from weightlab.functional._validation import (
    Normalize,
    Reduction,
    WeightLike,
    as_weight,
    check_class_targets,
    check_logits,
    check_normalize,
    check_probability_range,
    check_probability_targets,
    check_reduction,
    check_sample_weight,
    check_target,
    check_weight_shape,
    check_weight_values,
    needs_composite,
    shape_str,
    values_checked,
)

__all__ = [
    "class_index_nll",
    "class_index_weights",
    "compute_dtype",
    "kept_count",
    "cross_entropy",
    "prepare_class_targets",
    "prepare_class_weight",
    "prepare_sample_weight",
]


def compute_dtype(input: Tensor) -> torch.dtype:
    """float16/bfloat16 inputs are computed in float32; other float dtypes as they are."""
    return torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype


def prepare_class_weight(
    class_weight: WeightLike | None,
    input: Tensor,
    num_classes: int,
    dtype: torch.dtype,
    validate_args: bool,
) -> Tensor | None:
    """Check a per-class weight vector of length ``num_classes`` and cast it to ``dtype``."""
    if class_weight is None:
        return None
    weight = as_weight("class_weight", class_weight, input, dtype)
    check_weight_shape(
        "class_weight", weight, (num_classes,), f"one weight per class, C={num_classes}"
    )
    if values_checked(validate_args):
        check_weight_values("class_weight", weight)
    return weight


def prepare_sample_weight(
    sample_weight: WeightLike | None,
    input: Tensor,
    element_shape: tuple[int, ...],
    dtype: torch.dtype,
    validate_args: bool,
) -> Tensor | None:
    """Check per-sample ``(N,)`` or per-element weights and expand them to ``element_shape``."""
    if sample_weight is None:
        return None
    weight = as_weight("sample_weight", sample_weight, input, dtype)
    per_sample = element_shape[:1]
    check_sample_weight(
        weight, [per_sample, element_shape], "one weight per sample, or per loss element"
    )
    if values_checked(validate_args):
        check_weight_values("sample_weight", weight, allow_all_zero=True)
    if weight.shape != element_shape:
        weight = weight.view(per_sample + (1,) * (len(element_shape) - 1)).expand(element_shape)
    return weight


def class_index_weights(
    target: Tensor,
    num_classes: int,
    ignore_index: int,
    weight: Tensor | None,
    dtype: torch.dtype,
    validate_args: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Check class-index targets; return ``(safe_target, counted, applied)`` per element.

    ``safe_target`` is the target with ignored elements mapped to class 0 (safe
    to gather with), ``counted`` is 1 where not ignored, ``applied`` is the
    target's class weight (1 without weights) where not ignored, else 0.
    """
    if values_checked(validate_args):
        check_class_targets(target, num_classes, ignore_index)
    kept = target != ignore_index
    safe_target = torch.where(kept, target, torch.zeros_like(target))
    counted = kept.to(dtype)
    applied = counted if weight is None else weight[safe_target] * counted
    return safe_target, counted, applied


def prepare_class_targets(
    target: Tensor, num_classes: int, ignore_index: int, validate_args: bool
) -> tuple[Tensor, bool]:
    """Check class-index targets; return ``(int64 target, all_kept)``.

    ``all_kept`` is True when the value check proved that no element is
    ``ignore_index`` (then no mask of kept elements needs to be built). The check is one
    :func:`torch.aminmax` pass; only when it finds a value outside ``[0, C)``
    does the detailed :func:`check_class_targets` run (which raises, or passes
    when those values are all ``ignore_index``).
    """
    if target.dtype != torch.int64:
        target = target.long()
    all_kept = False
    if values_checked(validate_args):
        if target.numel() == 0:
            all_kept = True
        else:
            low, high = torch.stack(torch.aminmax(target)).tolist()
            all_kept = low >= 0 and high < num_classes
            if not all_kept:
                check_class_targets(target, num_classes, ignore_index)
        all_kept = all_kept and not 0 <= ignore_index < num_classes
    return target, all_kept


def class_index_nll(
    log_p: Tensor,
    target: Tensor,
    all_kept: bool,
    weight: Tensor | None,
    samples: Tensor | None,
    ignore_index: int,
    reduction: Reduction,
    normalize: Normalize,
    out_dtype: torch.dtype,
) -> Tensor | LossParts:
    """Weighted ``-log p`` of the target class, reduced: PyTorch's fused ``nll_loss``.

    ``target`` and ``all_kept`` come from :func:`prepare_class_targets`, ``samples``
    from :func:`prepare_sample_weight`. The per-element value is
    ``w[y] * -log_p[y]`` (0 where ignored), exactly ``nll_loss(weight=w)``; for
    ``"sum"``/``"mean"``/``"parts"`` without sample weights the sum and the sum of
    applied weights come from one fused ``nll_loss`` call. A class weight that
    requires grad (PyTorch's ``nll_loss`` has no gradient for it) is gathered
    with plain autograd ops instead, so it gets its gradient.
    """
    learnable = needs_composite(weight)
    if log_p.dim() == 2 and samples is None and reduction != "none" and not learnable:
        total, weight_sum = torch.ops.aten.nll_loss_forward(log_p, target, weight, 2, ignore_index)
        if normalize == "weight" or weight is None:
            denominator = weight_sum
        else:
            denominator = kept_count(target, all_kept, ignore_index, log_p.dtype)
        return reduce_total(total, denominator, reduction, out_dtype)
    if learnable:
        return _class_index_nll_composite(
            log_p, target, all_kept, weight, samples, ignore_index, reduction, normalize,
            out_dtype,
        )
    loss = torch.nn.functional.nll_loss(
        log_p, target, weight, ignore_index=ignore_index, reduction="none"
    )
    if reduction == "none":
        return (loss if samples is None else loss * samples).to(out_dtype)
    counted = kept_count(target, all_kept, ignore_index, log_p.dtype, per_element=True)
    safe = target if all_kept else torch.where(target != ignore_index, target, 0)
    applied = counted if weight is None else weight[safe] * counted
    if samples is not None:
        loss = loss * samples
        applied = applied * samples
    return reduce_loss(loss, applied, counted, reduction, normalize, out_dtype)


def _class_index_nll_composite(
    log_p: Tensor,
    target: Tensor,
    all_kept: bool,
    weight: Tensor | None,
    samples: Tensor | None,
    ignore_index: int,
    reduction: Reduction,
    normalize: Normalize,
    out_dtype: torch.dtype,
) -> Tensor | LossParts:
    """:func:`class_index_nll` with plain autograd ops (gradients for the class weights too)."""
    counted = kept_count(target, all_kept, ignore_index, log_p.dtype, per_element=True)
    safe = target if all_kept else torch.where(target != ignore_index, target, 0)
    applied = counted if weight is None else weight[safe] * counted
    loss = -log_p.gather(1, safe.unsqueeze(1)).squeeze(1) * applied
    if samples is not None:
        loss = loss * samples
        applied = applied * samples
    return reduce_loss(loss, applied, counted, reduction, normalize, out_dtype)


def kept_count(
    target: Tensor,
    all_kept: bool,
    ignore_index: int,
    dtype: torch.dtype,
    *,
    per_element: bool = False,
) -> Tensor:
    """1 per element that is not ignored (per element), or their number (a 0-d tensor)."""
    if not all_kept:
        kept = (target != ignore_index).to(dtype)
        return kept if per_element else kept.sum()
    if per_element:
        return torch.ones(target.shape, dtype=dtype, device=target.device)
    return torch.tensor(float(target.numel()), dtype=dtype, device=target.device)


def _class_view(weight: Tensor, ndim: int) -> Tensor:
    """Shape a (C,) vector to broadcast along dim 1 of an (N, C, d1, ..., dk) tensor."""
    return weight.view((1, -1) + (1,) * (ndim - 2))


@overload
def cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    class_weight: WeightLike | None = ...,
    sample_weight: WeightLike | None = ...,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    reduction: Literal["mean", "sum", "none"] = ...,
    normalize: Normalize | None = ...,
    validate_args: bool = ...,
) -> Tensor: ...


@overload
def cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    class_weight: WeightLike | None = ...,
    sample_weight: WeightLike | None = ...,
    ignore_index: int = ...,
    label_smoothing: float = ...,
    reduction: Literal["parts"],
    normalize: Normalize | None = ...,
    validate_args: bool = ...,
) -> LossParts: ...


def cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    class_weight: WeightLike | None = None,
    sample_weight: WeightLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Literal["mean", "sum", "none", "parts"] = "mean",
    normalize: Normalize | None = None,
    validate_args: bool = True,
) -> Tensor | LossParts:
    r"""Softmax cross-entropy on logits, with class and sample weights that multiply.

    With class indices :math:`y_i`, class weights :math:`w_c` and sample weights
    :math:`s_i`, and :math:`\log p_{ic}` the log-softmax over dim 1:

    .. math::
        l_i = s_i \Big[(1-\varepsilon)\, w_{y_i} (-\log p_{i y_i})
              + \tfrac{\varepsilon}{C} \sum_c w_c (-\log p_{ic})\Big]

    and the applied weight is :math:`s_i w_{y_i}`. With probability targets
    :math:`t_{ic}` (smoothed to :math:`(1-\varepsilon) t_{ic} + \varepsilon / C`):
    :math:`l_i = -s_i \sum_c w_c t_{ic} \log p_{ic}`, applied weight
    :math:`s_i \sum_c w_c t_{ic}`.

    PyTorch conventions kept by default (``normalize=None``):

    - class indices: ``"mean"`` divides by the sum of applied weights
      :math:`\sum_i s_i w_{y_i}` over elements that are not ignored;
    - label smoothing with class weights: the smoothing term weights class
      :math:`c` by :math:`w_c`, not by the target's weight, and is divided by
      the same sum of target weights;
    - probability targets with class weights: ``"mean"`` divides by the number
      of elements :math:`N \cdot d_1 \cdots d_k`, not by any weight.

    An empty batch, or one where every element is ignored (or weighs 0), gives
    a loss of 0 with a zero gradient (PyTorch gives NaN).

    Args:
        input: logits of shape ``(N, C)``, ``(N, C, d1, ..., dk)`` or ``(C,)``.
            float16/bfloat16 are computed in float32 and returned in their dtype.
        target: class indices (integer dtype) of shape ``(N,)``/``(N, d1, ..., dk)``,
            or class probabilities (floating) of the input's shape: non-negative,
            each row summing to 1 over dim 1 (checked with ``validate_args``).
        class_weight: weight of each class, shape ``(C,)``; indexed by the target class.
            May require grad (learned weights get their gradient).
        sample_weight: weight of each sample ``(N,)`` or of each element
            ``(N, d1, ..., dk)``; never broadcast from other shapes.
        ignore_index: class-index target value that contributes nothing (not
            used with probability targets).
        label_smoothing: :math:`\varepsilon \in [0, 1]`.
        reduction: ``"mean"``, ``"sum"``, ``"none"`` (per element), or ``"parts"``
            (a :class:`LossParts` of the weighted sum and its normaliser).
        normalize: what ``"mean"`` divides by: ``"weight"`` (sum of applied
            weights), ``"count"`` (number of elements not ignored), or ``None``
            for PyTorch's choice (``"weight"`` for class indices, ``"count"`` for
            probability targets).
        validate_args: run value checks that sync the device (weights finite and
            non-negative, targets in range). Skipped while ``torch.compile`` traces.

    Returns:
        The loss (a scalar, or per element with ``"none"``), or :class:`LossParts`.

    Raises:
        InvalidDtypeError: integer/boolean logits; float class indices; integer
            targets of the input's shape.
        ShapeMismatchError: target or sample weights that do not match the input.
        InvalidWeightError: weights of the wrong length, negative, NaN, inf or all zero.
        TargetOutOfRangeError: a class index outside ``[0, C)`` that is not ``ignore_index``;
            probabilities that are negative or do not sum to 1.
        DeviceMismatchError: a weight or target on another device than ``input``.
        UnknownNameError: an unknown ``reduction`` or ``normalize``.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        >>> target = torch.tensor([0, 2])
        >>> cross_entropy(logits, target, class_weight=[1.0, 1.0, 3.0])
        tensor(1.2235)
        >>> torch.nn.functional.cross_entropy(logits, target, weight=torch.tensor([1.0, 1.0, 3.0]))
        tensor(1.2235)
        >>> cross_entropy(logits, target, class_weight=[1.0, 1.0, 3.0], normalize="count")
        tensor(2.4469)
    """
    return _cross_entropy(
        input,
        target,
        class_weight,
        sample_weight,
        ignore_index,
        label_smoothing,
        reduction,
        normalize,
        validate_args,
    )


def _cross_entropy(
    input: Tensor,
    target: Tensor,
    class_weight: WeightLike | None,
    sample_weight: WeightLike | None,
    ignore_index: int,
    label_smoothing: float,
    reduction: Reduction,
    normalize: Normalize | None,
    validate_args: bool,
) -> Tensor | LossParts:
    check_reduction(reduction)
    check_normalize(normalize)
    check_probability_range("label_smoothing", label_smoothing)
    check_logits(input)
    check_target(target, input, convert="torch.as_tensor(labels)")
    if input.dim() == 1:
        unbatched = _cross_entropy(
            input.unsqueeze(0),
            target.unsqueeze(0),
            class_weight,
            None if sample_weight is None else _unsqueeze(sample_weight),
            ignore_index,
            label_smoothing,
            reduction,
            normalize,
            validate_args,
        )
        if isinstance(unbatched, Tensor) and reduction == "none":
            return unbatched.squeeze(0)
        return unbatched
    if input.dim() == 0:
        raise ShapeMismatchError(
            expected(
                "input",
                "to have shape (N, C), (N, C, d1, ..., dk) or (C,)",
                "a 0-d tensor",
                "Pass one logit per class.",
            )
        )
    num_classes = input.shape[1]
    probabilities = _is_probability_target(input, target)
    dtype = compute_dtype(input)
    logits = input.to(dtype)
    weight = prepare_class_weight(class_weight, input, num_classes, dtype, validate_args)
    log_p = torch.log_softmax(logits, dim=1)
    eps = float(label_smoothing)
    if not probabilities and eps == 0.0:
        index_target, all_kept = prepare_class_targets(
            target, num_classes, ignore_index, validate_args
        )
        samples = prepare_sample_weight(
            sample_weight, input, tuple(target.shape), dtype, validate_args
        )
        return class_index_nll(
            log_p,
            index_target,
            all_kept,
            weight,
            samples,
            ignore_index,
            reduction,
            normalize or "weight",
            input.dtype,
        )
    if probabilities:
        if values_checked(validate_args):
            check_probability_targets(target)
        element_shape = (input.shape[0], *input.shape[2:])
        probs = target.to(dtype)
        if eps > 0:
            probs = probs * (1.0 - eps) + eps / num_classes
        weighted = probs if weight is None else probs * _class_view(weight, input.dim())
        loss = -(weighted * log_p).sum(1)
        applied = weighted.sum(1)
        counted = torch.ones_like(loss)
        default_normalize: Normalize = "count"
    else:
        element_shape = tuple(target.shape)
        safe_target, counted, applied = class_index_weights(
            target, num_classes, ignore_index, weight, dtype, validate_args
        )
        nll = -log_p.gather(1, safe_target.unsqueeze(1)).squeeze(1)
        loss = applied * nll
        if eps > 0:
            smooth = -(log_p if weight is None else log_p * _class_view(weight, input.dim())).sum(1)
            loss = (1.0 - eps) * loss + (eps / num_classes) * smooth * counted
        default_normalize = "weight"
    samples = prepare_sample_weight(sample_weight, input, element_shape, dtype, validate_args)
    if samples is not None:
        loss = loss * samples
        applied = applied * samples
    return reduce_loss(
        loss, applied, counted, reduction, normalize or default_normalize, input.dtype
    )


def _unsqueeze(weight: WeightLike) -> Tensor:
    """Give the weight of an unbatched sample a batch axis of length 1."""
    tensor = weight if isinstance(weight, Tensor) else torch.as_tensor(weight, dtype=torch.float64)
    return tensor.reshape(-1)


def _is_probability_target(input: Tensor, target: Tensor) -> bool:
    """Decide the target kind from dtype and shape; refuse the mixed-up combinations."""
    index_shape = (input.shape[0], *input.shape[2:])
    if target.dtype == torch.bool:
        raise InvalidDtypeError(
            expected(
                "target",
                "to hold class indices (an integer dtype) or class probabilities (floating)",
                "dtype torch.bool",
                "Call `target.long()` for class indices, or `target.float()` for probabilities.",
            )
        )
    if target.is_floating_point():
        if tuple(target.shape) == tuple(input.shape):
            return True
        if tuple(target.shape) == index_shape:
            raise InvalidDtypeError(
                expected(
                    "target",
                    f"of shape {shape_str(index_shape)} to hold class indices (an integer dtype)",
                    f"dtype {target.dtype}",
                    "Call `target.long()`, or pass class probabilities of the input's shape "
                    f"{shape_str(input.shape)}.",
                )
            )
    elif tuple(target.shape) == index_shape:
        return False
    elif tuple(target.shape) == tuple(input.shape):
        raise InvalidDtypeError(
            expected(
                "target",
                f"of the input's shape {shape_str(input.shape)} to hold class probabilities "
                "(a floating dtype)",
                f"dtype {target.dtype}",
                "For one-hot labels pass `target.argmax(1)` (class indices) or `target.float()`.",
            )
        )
    raise ShapeMismatchError(
        expected(
            "target",
            f"to have shape {shape_str(index_shape)} (class indices) or "
            f"{shape_str(input.shape)} (class probabilities) for input of shape "
            f"{shape_str(input.shape)}",
            f"shape {shape_str(target.shape)}",
            "Check that `target` holds one label per sample (and per position for "
            "(N, C, d1, ..., dk) inputs).",
        )
    )
