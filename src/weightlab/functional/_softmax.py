r"""The shared stage of every softmax loss on class-index targets.

Softmax focal loss, logit adjustment, balanced softmax and LDAM all compute
the log-probability of the *target* class of modified logits

.. math::
    z_{ic} = s\,(x_{ic} + b_c - m_c [c = y_i]), \qquad
    \log p_{i y_i} = z_{i y_i} - \log \sum_c e^{z_{ic}}

(``s`` a scale, ``b`` a per-class offset, ``m`` a per-class margin on the
target logit) and then only per-sample work. :func:`target_nll` does that in
one autograd Function: ``log_softmax`` and PyTorch's fused ``nll_loss`` (which
also sums the applied class weights), or a gather and the focal term; its
backward is analytic,
:math:`\partial \log p_{iy_i} / \partial x_{ic} = s([c = y_i] - p_{ic})`, run
through PyTorch's own ``nll_loss`` and ``log_softmax`` backward kernels with
the scale folded into the incoming gradient, so no ``(N, C)`` one-hot, margin
or offset tensor is kept for autograd, only ``log p``. That backward is not
itself differentiable (``once_differentiable``): with ``create_graph=True``
the gradient comes back without a ``grad_fn``, so differentiating it again
fails with PyTorch's "does not require grad" error (as before). Plain (class-balanced) softmax
cross-entropy skips the Function and uses the :func:`cross_entropy` stage
(twice differentiable). :func:`softmax_loss` adds the class/sample weights,
``ignore_index`` and the shared reduction. A class weight, offset or margin
that requires grad (learned weights, a learned prior) takes the same formula
in plain autograd ops instead (the Function differentiates the logits only).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from weightlab.errors import InvalidDtypeError, ShapeMismatchError, expected
from weightlab.functional._reduction import LossParts, reduce_loss, reduce_total
from weightlab.functional._validation import (
    Normalize,
    Reduction,
    WeightLike,
    check_logits,
    check_normalize,
    check_reduction,
    check_target,
    needs_composite,
    shape_str,
)
from weightlab.functional.cross_entropy import (
    _is_probability_target,
    class_index_nll,
    compute_dtype,
    kept_count,
    prepare_class_targets,
    prepare_class_weight,
    prepare_sample_weight,
)

__all__ = ["check_class_index_input", "class_view", "focal_term", "softmax_loss", "target_nll"]


def class_view(vector: Tensor, ndim: int) -> Tensor:
    """Shape a (C,) vector to broadcast along dim 1 of an (N, C, d1, ..., dk) tensor."""
    return vector.view((1, -1) + (1,) * (ndim - 2))


class _TargetNLL(torch.autograd.Function):
    r"""Weighted ``-log softmax(s (x + b - m onehot))`` at the target, or its focal form.

    Forward returns ``(values, weight_sum)``: with ``reduce`` the sum over elements
    of ``a_i f(log p_t)`` (a 0-d tensor), else the per-element values; and the
    sum of the applied weights ``a_i`` (``w[y_i]``, 0 where ignored; not
    differentiable). ``f`` is ``-l`` or, with ``gamma > 0``, the focal
    ``-(1 - e^l)^gamma l``. Only ``log p`` (one ``(N, C)`` buffer), the target
    and one per-element coefficient are kept for the backward

    .. math::
        \frac{\partial}{\partial x_{ic}} = -s\, g_i\, a_i f'(l_i)\,(p_{ic} - [c = y_i])

    run through PyTorch's ``nll_loss``/``log_softmax`` backward kernels (2-D
    input) or in place on ``exp(log p)``. The backward is not itself
    differentiable (``once_differentiable``: no double backward).
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        logits: Tensor,
        target: Tensor,
        all_kept: bool,
        ignore_index: int,
        weight: Tensor | None,
        scale: float,
        offset: Tensor | None,
        margin: Tensor | None,
        gamma: float,
        reduce: bool,
    ) -> tuple[Tensor, Tensor]:
        safe = target if all_kept else torch.where(target != ignore_index, target, 0)
        index = safe.unsqueeze(1)
        z = logits
        if offset is not None:
            z = z + class_view(offset, logits.dim())
        if scale != 1.0:
            z = z * scale if z is logits else z.mul_(scale)
        if margin is not None:
            z = z.clone() if z is logits else z
            z.scatter_add_(1, index, (margin * -scale)[safe].unsqueeze(1))
        if z is logits or z.dim() != 2:
            log_p = torch.log_softmax(z, dim=1)
        else:  # z is this function's own buffer: overwrite it (one (N, C) allocation less)
            log_p = torch.log_softmax(z, dim=1, out=z)
        del z
        coef: Tensor | None = None
        if gamma == 0.0 and log_p.dim() == 2:
            values, weight_sum = torch.ops.aten.nll_loss_forward(
                log_p, target, weight, 2 if reduce else 0, ignore_index
            )
        else:
            applied = _applied(safe, target, all_kept, ignore_index, weight, log_p.dtype)
            log_pt = log_p.gather(1, index).squeeze(1)
            if gamma == 0.0:
                per = log_pt if applied is None else log_pt * applied
            else:
                per, coef = _focal_parts(log_pt, applied, gamma, logits.requires_grad)
            values = per.sum().neg() if reduce else per.neg()
            weight_sum = (
                applied.sum()
                if applied is not None
                else torch.tensor(float(safe.numel()), dtype=log_p.dtype, device=log_p.device)
            )
        ctx.mark_non_differentiable(weight_sum)
        ctx.save_for_backward(log_p, target, coef, weight, weight_sum)  # type: ignore[arg-type]
        ctx.reduce = reduce  # type: ignore[attr-defined]
        ctx.scale = scale  # type: ignore[attr-defined]
        ctx.gamma = gamma  # type: ignore[attr-defined]
        ctx.all_kept = all_kept  # type: ignore[attr-defined]
        ctx.ignore_index = ignore_index  # type: ignore[attr-defined]
        return values, weight_sum

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor, _: Tensor | None) -> tuple[Tensor | None, ...]:
        nothing = (None,) * 9
        if not ctx.needs_input_grad[0]:
            return (None, *nothing)
        log_p, target, coef, weight, weight_sum = ctx.saved_tensors
        all_kept: bool = ctx.all_kept
        ignore_index: int = ctx.ignore_index
        g = grad * ctx.scale  # d/dx = s d/dz, and both kernels below are linear in g
        if log_p.dim() == 2:
            # PyTorch's own kernels: the gradient of -w[y] log p_y, then of log_softmax
            if coef is None:
                reduction, w = (2 if ctx.reduce else 0), weight
            else:
                g, reduction, w = coef * g, 0, None
            grad_log_p = torch.ops.aten.nll_loss_backward(
                g, log_p, target, w, reduction, ignore_index, weight_sum
            )
            out: Tensor = torch.ops.aten._log_softmax_backward_data(
                grad_log_p, log_p, 1, log_p.dtype
            )
            return (out, *nothing)
        safe = target if all_kept else torch.where(target != ignore_index, target, 0)
        if coef is None:
            applied = _applied(safe, target, all_kept, ignore_index, weight, log_p.dtype)
            coef = g if applied is None else applied * g
        else:
            coef = coef * g
        out = torch.exp(log_p)
        index = safe.unsqueeze(1)
        minus_one = torch.full((), -1.0, dtype=out.dtype, device=out.device)
        out.scatter_add_(1, index, minus_one.expand(index.shape))
        out.mul_(coef.unsqueeze(1) if coef.dim() > 0 else coef)
        return (out, *nothing)


def _focal_parts(
    log_pt: Tensor, applied: Tensor | None, gamma: float, needs_grad: bool
) -> tuple[Tensor, Tensor | None]:
    r"""``a (1 - p)^gamma l`` and the backward coefficient ``-a f'(l)`` of the focal term.

    With ``q = 1 - p = -expm1(l)``:
    :math:`-f'(l) = q^\gamma - \gamma q^{\gamma - 1} p\, l`. For ``gamma >= 1``
    that is computed as :math:`q^{\gamma-1}(q - \gamma p l)` (finite everywhere);
    for ``0 < gamma < 1`` as :math:`q^\gamma (1 - \gamma p\, l / q)` with
    ``l / q -> -1`` as ``q -> 0``, so it stays finite at ``p -> 1`` too.
    """
    one_minus = torch.expm1(log_pt).neg_()
    if gamma >= 1.0:
        lower = one_minus.pow(gamma - 1.0) if gamma != 1.0 else None
        if applied is not None:
            lower = applied if lower is None else lower.mul_(applied)
        factor = one_minus if lower is None else one_minus * lower
        per = factor * log_pt
        if not needs_grad:
            return per, None
        coef = torch.addcmul(one_minus, torch.exp(log_pt), log_pt, value=-gamma)
        return per, (coef if lower is None else coef.mul_(lower))
    factor = one_minus.pow(gamma)
    if applied is not None:
        factor.mul_(applied)
    per = factor * log_pt
    if not needs_grad:
        return per, None
    ratio = torch.where(one_minus > 0, log_pt / one_minus, -1.0)
    one = torch.ones((), dtype=log_pt.dtype, device=log_pt.device)
    coef = torch.addcmul(one, torch.exp(log_pt), ratio, value=-gamma).mul_(factor)
    return per, coef


def _applied(
    safe: Tensor,
    target: Tensor,
    all_kept: bool,
    ignore_index: int,
    weight: Tensor | None,
    dtype: torch.dtype,
) -> Tensor | None:
    """Per-element applied weight ``w[y]`` (0 where ignored), or None when it is all ones."""
    if all_kept:
        return None if weight is None else weight[safe]
    kept = (target != ignore_index).to(dtype)
    return kept if weight is None else weight[safe] * kept


def target_nll(
    logits: Tensor,
    target: Tensor,
    *,
    all_kept: bool,
    ignore_index: int,
    weight: Tensor | None,
    scale: float = 1.0,
    offset: Tensor | None = None,
    margin: Tensor | None = None,
    gamma: float = 0.0,
    reduce: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""Return ``(sum or per-element a_i f(log p_t), sum of a_i)`` of ``s (x + b - m_y onehot)``.

    ``target`` is the int64 target and ``all_kept`` the flag from
    :func:`~weightlab.functional.cross_entropy.prepare_class_targets`. The
    backward is analytic and fused; it is not itself differentiable (no
    double backward).
    """
    values, weight_sum = _TargetNLL.apply(  # type: ignore[no-untyped-call]
        logits,
        target,
        all_kept,
        int(ignore_index),
        weight,
        float(scale),
        offset,
        margin,
        float(gamma),
        reduce,
    )
    return values, weight_sum


class _FocalTerm(torch.autograd.Function):
    r"""``-(1 - e^l)^gamma * l`` of a log-probability ``l``, with a stable backward.

    .. math::
        \frac{d}{dl} = -(1 - p)^\gamma \Big(1 - \gamma\, p\, \frac{l}{1 - p}\Big)

    where ``1 - p = -expm1(l)``; the ratio ``l / (1 - p)`` tends to -1 as
    ``p -> 1``, so the derivative is finite for every ``gamma >= 0``.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, log_p: Tensor, gamma: float) -> Tensor:
        one_minus = -torch.expm1(log_p)
        factor = one_minus.pow(gamma)
        ctx.save_for_backward(log_p, one_minus, factor)
        ctx.gamma = gamma  # type: ignore[attr-defined]
        return -factor * log_p

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        log_p, one_minus, factor = ctx.saved_tensors
        gamma: float = ctx.gamma
        if gamma == 0.0:
            return -grad, None
        positive = one_minus > 0
        ratio = torch.where(
            positive, log_p / torch.where(positive, one_minus, 1.0), -torch.ones_like(log_p)
        )
        slope = -factor * (1.0 - gamma * torch.exp(log_p) * ratio)
        return grad * slope, None


def focal_term(log_p: Tensor, gamma: float) -> Tensor:
    r"""Return :math:`-(1 - p)^\gamma \log p` from :math:`\log p`, with a finite gradient.

    Example:
        >>> focal_term(torch.log(torch.tensor([0.5, 1.0])), 2.0)
        tensor([0.1733, 0.0000])
    """
    result: Tensor = _FocalTerm.apply(log_p, float(gamma))  # type: ignore[no-untyped-call]
    return result


def check_class_index_input(input: Tensor, target: Tensor) -> None:
    """Refuse inputs that are not ``(N, C, d...)`` logits with class-index targets."""
    check_logits(input)
    check_target(target, input, convert="torch.as_tensor(labels)")
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
    gamma: float = 0.0,
) -> Tensor | LossParts:
    """Check, compute ``-log p_t`` (focal with ``gamma > 0``), weight and reduce.

    ``offset`` and ``margin`` are (C,) tensors in the compute dtype on the
    input's device. ``"mean"`` divides by the sum of applied weights by default.
    """
    check_reduction(reduction)
    check_normalize(normalize)
    check_class_index_input(input, target)
    num_classes = input.shape[1]
    dtype = compute_dtype(input)
    weight = prepare_class_weight(class_weight, input, num_classes, dtype, validate_args)
    index_target, all_kept = prepare_class_targets(
        target, num_classes, ignore_index, validate_args
    )
    samples = prepare_sample_weight(
        sample_weight, input, tuple(target.shape), dtype, validate_args
    )
    norm: Normalize = normalize or "weight"
    logits = input.to(dtype)
    plain = gamma == 0.0 and scale == 1.0 and offset is None and margin is None
    if not plain and needs_composite(weight, offset, margin):
        return _softmax_composite(
            logits, index_target, all_kept, ignore_index, weight, samples, reduction, norm,
            input.dtype, scale=scale, offset=offset, margin=margin, gamma=gamma,
        )  # fmt: skip
    if plain:
        log_p = torch.log_softmax(logits, dim=1)
        return class_index_nll(
            log_p, index_target, all_kept, weight, samples, ignore_index, reduction, norm,
            input.dtype,
        )
    reduce = samples is None and reduction != "none"
    values, weight_sum = target_nll(
        logits,
        index_target,
        all_kept=all_kept,
        ignore_index=ignore_index,
        weight=weight,
        scale=scale,
        offset=offset,
        margin=margin,
        gamma=gamma,
        reduce=reduce,
    )
    if reduce:
        denominator = (
            weight_sum
            if norm == "weight"
            else kept_count(index_target, all_kept, ignore_index, dtype)
        )
        return reduce_total(values, denominator, reduction, input.dtype)
    if reduction == "none":
        return (values if samples is None else values * samples).to(input.dtype)
    counted = kept_count(index_target, all_kept, ignore_index, dtype, per_element=True)
    safe = index_target if all_kept else torch.where(index_target != ignore_index, index_target, 0)
    applied = counted if weight is None else weight[safe] * counted
    if samples is not None:
        values = values * samples
        applied = applied * samples
    return reduce_loss(values, applied, counted, reduction, norm, input.dtype)


def _softmax_composite(
    logits: Tensor,
    target: Tensor,
    all_kept: bool,
    ignore_index: int,
    weight: Tensor | None,
    samples: Tensor | None,
    reduction: Reduction,
    normalize: Normalize,
    out_dtype: torch.dtype,
    *,
    scale: float,
    offset: Tensor | None,
    margin: Tensor | None,
    gamma: float,
) -> Tensor | LossParts:
    """:func:`target_nll` and the reduction with plain autograd ops.

    Used when a class weight, offset (from ``counts``/``prior``) or margin requires
    grad: :class:`_TargetNLL` differentiates the logits only. Same numbers.
    """
    safe = target if all_kept else torch.where(target != ignore_index, target, 0)
    index = safe.unsqueeze(1)
    z = logits
    if offset is not None:
        z = z + class_view(offset, logits.dim())
    if scale != 1.0:
        z = z * scale
    if margin is not None:
        z = z.scatter_add(1, index, (margin * -scale)[safe].unsqueeze(1))
    log_pt = torch.log_softmax(z, dim=1).gather(1, index).squeeze(1)
    counted = kept_count(target, all_kept, ignore_index, logits.dtype, per_element=True)
    applied = counted if weight is None else weight[safe] * counted
    loss = (focal_term(log_pt, gamma) if gamma != 0.0 else -log_pt) * applied
    if samples is not None:
        loss = loss * samples
        applied = applied * samples
    return reduce_loss(loss, applied, counted, reduction, normalize, out_dtype)
