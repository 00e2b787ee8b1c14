r"""The shared stage of every softmax loss on class-index targets.

Softmax focal loss, logit adjustment, balanced softmax and LDAM all compute
the log-probability of the *target* class of modified logits

.. math::
    z_{ic} = s\,(x_{ic} + b_c - m_c [c = y_i]), \qquad
    \log p_{i y_i} = z_{i y_i} - \log \sum_c e^{z_{ic}}

(``s`` a scale, ``b`` a per-class offset, ``m`` a per-class margin on the
target logit) and then only per-sample work. :func:`target_log_prob` does that
in one fused pass with an analytic backward,
:math:`\partial \log p_{iy_i} / \partial x_{ic} = s([c = y_i] - p_{ic})`, so no
``(N, C)`` one-hot, margin or offset tensor is kept for autograd.
:func:`softmax_loss` adds the class/sample weights, ``ignore_index`` and the
shared reduction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from weightlab.errors import InvalidDtypeError, ShapeMismatchError, expected
from weightlab.functional._reduction import LossParts, reduce_loss
from weightlab.functional._validation import (
    Normalize,
    Reduction,
    WeightLike,
    check_device,
    check_logits,
    check_normalize,
    check_reduction,
    shape_str,
)
from weightlab.functional.cross_entropy import (
    _is_probability_target,
    class_index_weights,
    compute_dtype,
    prepare_class_weight,
    prepare_sample_weight,
)

__all__ = ["check_class_index_input", "class_view", "softmax_loss", "target_log_prob"]


def class_view(vector: Tensor, ndim: int) -> Tensor:
    """Shape a (C,) vector to broadcast along dim 1 of an (N, C, d1, ..., dk) tensor."""
    return vector.view((1, -1) + (1,) * (ndim - 2))


class _TargetLogSoftmax(torch.autograd.Function):
    """``log softmax(s (x + b - m onehot))`` at the target, with an analytic backward."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        logits: Tensor,
        target: Tensor,
        scale: float,
        offset: Tensor | None,
        margin: Tensor | None,
    ) -> Tensor:
        index = target.unsqueeze(1)
        z = logits
        if offset is not None:
            z = z + class_view(offset, logits.dim())
        if scale != 1.0:
            z = z * scale if z is logits else z.mul_(scale)
        if margin is not None:
            z = z.clone() if z is logits else z
            z.scatter_add_(1, index, (-scale * margin[target]).unsqueeze(1).to(z.dtype))
        log_p = torch.log_softmax(z, dim=1)
        ctx.save_for_backward(log_p, index)
        ctx.scale = scale  # type: ignore[attr-defined]
        return log_p.gather(1, index).squeeze(1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        log_p, index = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        g = (grad * ctx.scale).unsqueeze(1)
        out = torch.exp(log_p)
        out.mul_(-g)
        out.scatter_add_(1, index, g)
        return out, None, None, None, None


def target_log_prob(
    logits: Tensor,
    target: Tensor,
    *,
    scale: float = 1.0,
    offset: Tensor | None = None,
    margin: Tensor | None = None,
) -> Tensor:
    r"""Return :math:`\log p_{i y_i}` of ``s (x + b - m_y onehot)``, shape of ``target``.

    ``target`` must hold valid class indices (ignored elements already mapped
    to a valid class). The backward is analytic and fused; it is not itself
    differentiable (no double backward).
    """
    result: Tensor = _TargetLogSoftmax.apply(  # type: ignore[no-untyped-call]
        logits, target, float(scale), offset, margin
    )
    return result


def check_class_index_input(input: Tensor, target: Tensor) -> None:
    """Refuse inputs that are not ``(N, C, d...)`` logits with class-index targets."""
    check_logits(input)
    if not isinstance(target, Tensor):
        raise InvalidDtypeError(
            expected(
                "target",
                "to be a torch.Tensor",
                type(target).__name__,
                "Convert labels with `torch.as_tensor(labels)`.",
            )
        )
    check_device("target", target, input)
    if input.dim() < 2:
        raise ShapeMismatchError(
            expected(
                "input",
                "to have shape (N, C) or (N, C, d1, ..., dk)",
                f"shape {shape_str(input.shape)}",
                "Pass a batch of logits; add a batch axis with `input.unsqueeze(0)`.",
            )
        )
    if _is_probability_target(input, target):
        raise InvalidDtypeError(
            expected(
                "target",
                f"to hold class indices of shape {shape_str((input.shape[0], *input.shape[2:]))}",
                f"class probabilities of shape {shape_str(target.shape)}",
                "This loss takes class indices only; pass `target.argmax(1)`.",
            )
        )


def softmax_loss(
    input: Tensor,
    target: Tensor,
    *,
    class_weight: WeightLike | None,
    sample_weight: WeightLike | None,
    ignore_index: int,
    reduction: Reduction,
    normalize: Normalize | None,
    validate_args: bool,
    scale: float = 1.0,
    offset: Tensor | None = None,
    margin: Tensor | None = None,
    per_element: Callable[[Tensor], Tensor] | None = None,
) -> Tensor | LossParts:
    """Check, compute ``per_element(log p_t)`` (default ``-log p_t``), weight and reduce.

    ``offset`` and ``margin`` are (C,) tensors in the compute dtype on the
    input's device. ``"mean"`` divides by the sum of applied weights by default.
    """
    check_reduction(reduction)
    check_normalize(normalize)
    check_class_index_input(input, target)
    num_classes = input.shape[1]
    dtype = compute_dtype(input)
    weight = prepare_class_weight(class_weight, input, num_classes, dtype, validate_args)
    safe_target, counted, applied = class_index_weights(
        target, num_classes, ignore_index, weight, dtype, validate_args
    )
    log_pt = target_log_prob(
        input.to(dtype), safe_target, scale=scale, offset=offset, margin=margin
    )
    value = -log_pt if per_element is None else per_element(log_pt)
    samples = prepare_sample_weight(
        sample_weight, input, tuple(target.shape), dtype, validate_args
    )
    if samples is not None:
        applied = applied * samples
    loss = value * applied
    return reduce_loss(loss, applied, counted, reduction, normalize or "weight", input.dtype)
