r"""Fused elementwise stages of the sigmoid-family losses (focal, asymmetric, class-balanced).

Each loss is one autograd Function whose forward computes the per-element
loss *and* its closed-form derivative in a short chain of (mostly in-place)
vector ops, and whose backward is one multiplication of the incoming gradient
by that saved derivative. Nothing else is kept for autograd: no one-hot, no
modulating factor, no log-sigmoid. With :math:`p = \sigma(x)`, :math:`q = 1 - p`
(both computed as sigmoids, so each keeps its relative precision),
:math:`s^+ = -\log p = \mathrm{softplus}(-x)` and
:math:`s^- = -\log q = \mathrm{softplus}(x)`:

.. math::
    \frac{dp}{dx} = pq, \qquad \frac{ds^+}{dx} = -q, \qquad \frac{ds^-}{dx} = p.

The formulas of each stage are in its docstring; every one of them is finite
for all exponents :math:`\gamma \ge 0` (also :math:`0 < \gamma < 1`, where
:math:`d u^\gamma / du` is infinite at :math:`u = 0`) and at logits of ±100.

There is no double backward: a backward with ``create_graph=True`` raises a
``RuntimeError`` that says so (rather than returning a gradient that silently
has no graph). Gradients flow to the logits only; the callers use the plain
(twice-differentiable) autograd composite when a target or weight requires grad.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from weightlab.functional._validation import needs_composite

__all__ = [
    "asymmetric_terms",
    "binary_denominator",
    "binary_scales",
    "needs_composite",
    "one_hot_focal_rows",
    "sigmoid_focal_terms",
]

Scale = Tensor | float | None


def _compact(samples: Tensor) -> Tensor:
    """A per-sample weight expanded to ``(N, L, ...)`` as its ``(N, 1, ...)`` view."""
    if samples.dim() > 1 and all(stride == 0 for stride in samples.stride()[1:]):
        for dim in range(1, samples.dim()):
            samples = samples.narrow(dim, 0, 1)
    return samples


def _times(a: Scale, b: Tensor | None) -> Scale:
    if b is None:
        return a
    return b if a is None else b * a


def binary_scales(
    pos: float | None,
    neg: float | None,
    classes: tuple[Tensor, Tensor] | None,
    samples: Tensor | None,
) -> tuple[Scale, Scale]:
    """The positive and negative scales ``a, b`` (α, class and sample weights) of a binary loss.

    ``pos``/``neg`` are scalars (e.g. α and 1 - α) or None, ``classes`` the
    ``(negative, positive)`` label views, ``samples`` the expanded sample weight.
    Each scale is None (1), a float, or a tensor that broadcasts to the input.
    """
    compact = None if samples is None else _compact(samples)
    pos_scale = _times(_times(pos, None if classes is None else classes[1]), compact)
    neg_scale = _times(_times(neg, None if classes is None else classes[0]), compact)
    if isinstance(neg_scale, Tensor) and neg_scale is pos_scale and torch.compiler.is_compiling():
        # Sample weights alone scale both terms: the same tensor twice, which dynamo
        # cannot pass to an autograd Function (fullgraph=True would fail).
        neg_scale = neg_scale.clone()
    return pos_scale, neg_scale


def binary_denominator(labels: Tensor, pos: Scale, neg: Scale, normalize: str) -> Tensor:
    """What ``"mean"`` divides by: the element count, or the sum of ``a t + b (1 - t)``."""
    if normalize != "weight":
        return torch.tensor(float(labels.numel()), dtype=labels.dtype, device=labels.device)
    positive = labels if pos is None else labels * pos
    negative = 1.0 - labels
    return (positive + (negative if neg is None else negative * neg)).sum()


def _softplus(x: Tensor) -> Tensor:
    r""":math:`\log(1 + e^x)` to rounding: PyTorch's softplus, thresholded where exact.

    Above the threshold ``x + log1p(exp(-x))`` rounds to ``x`` in the dtype
    (float32: 20, float64: 40).
    """
    threshold = 20.0 if x.dtype in (torch.float32, torch.float16, torch.bfloat16) else 40.0
    return torch.nn.functional.softplus(x, threshold=threshold)


def _scale_(t: Tensor, scale: Scale, sign: float = 1.0) -> Tensor:
    """``t *= sign * scale`` in place (``scale=None`` means 1)."""
    if scale is None:
        return t.neg_() if sign < 0 else t
    if isinstance(scale, Tensor):
        t.mul_(scale)
        return t.neg_() if sign < 0 else t
    return t.mul_(sign * scale)


def _powers(base: Tensor, gamma: float) -> tuple[Tensor | None, Tensor | None]:
    r"""``(base^gamma, base^(gamma - 1))``; None stands for a factor of 1.

    The second is only computed for ``gamma >= 1`` (it is infinite at 0 otherwise);
    for ``gamma < 1`` it is returned as None and must not be used.
    """
    if gamma == 0.0:
        return None, None
    if gamma == 1.0:
        return base, None
    if gamma == 2.0:
        return base * base, base
    if gamma > 1.0:
        low = base.pow(gamma - 1.0)
        return low * base, low
    return base.pow(gamma), None


def _tiny(t: Tensor) -> float:
    return float(torch.finfo(t.dtype).tiny)


class _Fused(torch.autograd.Function):
    """Shared backward: the saved derivative times the incoming gradient (not differentiable)."""

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: refuse instead of a silent zero
            raise RuntimeError(
                f"{ctx.name} has no double backward: its gradient is a closed form computed "
                "in the forward pass, and create_graph=True asked to differentiate it again. "
                "Differentiate without create_graph, or (sigmoid_focal_loss, asymmetric_loss) "
                "pass a target with requires_grad=True, which selects the twice-differentiable "
                "composite."
            )
        nothing = (None,) * ctx.num_args
        if not ctx.needs_input_grad[0]:
            return (None, *nothing)
        (slope,) = ctx.saved_tensors
        if ctx.rows:  # per-row values: broadcast the (N, d...) gradient over dim 1
            grad = grad.unsqueeze(1)
        elif ctx.scale != 1.0:
            grad = grad * ctx.scale
        return (torch.mul(slope, grad), *nothing)


def _finish(
    ctx: Any,
    name: str,
    loss: Tensor,
    slope: Tensor | None,
    reduce: bool,
    num_args: int,
    scale: float = 1.0,
) -> Tensor:
    """Save the derivative; return the loss (times ``scale``), summed with ``reduce``."""
    ctx.name = name
    ctx.num_args = num_args
    ctx.rows = False
    ctx.scale = scale
    ctx.save_for_backward(slope)
    if reduce:
        total = loss.sum()
        return total if scale == 1.0 else total.mul_(scale)
    return loss if scale == 1.0 else loss.mul_(scale)


class _SigmoidFocal(_Fused):
    r"""Per-element sigmoid focal loss and its derivative in one forward.

    With target :math:`t`, positive/negative scales :math:`a, b` (α, class and
    sample weights folded in), :math:`u = 1 - p_t = t q + (1 - t) p` and
    :math:`c = a t s^+ + b (1 - t) s^-` (the weighted BCE):

    .. math::
        l = u^\gamma c, \qquad
        \frac{dl}{dx} = u^\gamma \big(b (1 - t) p - a t q\big)
            + \gamma\, c\, u^{\gamma - 1} pq (1 - 2t),

    since :math:`du/dx = pq(1 - 2t)`. For :math:`\gamma \ge 1` the second term is
    computed as written; for :math:`0 < \gamma < 1` as
    :math:`\gamma c\, u^\gamma pq(1 - 2t) / \max(u, \text{tiny})`
    (:math:`pq / u \le 1`; where :math:`u` underflows, :math:`u^\gamma` is 0 too).
    Both :math:`u` and the BCE derivative are ``lerp``\ s over :math:`t`, exact
    at 0/1 targets. With scalar scales and :math:`b \ne 0`, :math:`b` is factored
    out (it multiplies the sum, or the incoming gradient) and the BCE derivative
    is :math:`b\,(u - \tfrac{a + b}{b}\, t q)`, which saves two passes.
    """

    @staticmethod
    def forward(
        ctx: Any,
        logits: Tensor,
        target: Tensor,
        pos: Scale,
        neg: Scale,
        gamma: float,
        reduce: bool,
    ) -> Tensor:
        needs_grad = ctx.needs_input_grad[0]
        # Scalar scales with b != 0: b is factored out (applied to the sum or to the
        # incoming gradient) and the BCE derivative is written through u (fewer passes).
        factored = (
            gamma != 0.0
            and not isinstance(pos, Tensor)
            and not isinstance(neg, Tensor)
            and neg != 0.0
        )
        a = 1.0 if pos is None or isinstance(pos, Tensor) else float(pos)
        b = 1.0 if neg is None or isinstance(neg, Tensor) else float(neg)
        nx = torch.neg(logits)
        sp = _softplus(nx)
        sn = _softplus(logits)
        q = nx.sigmoid_()
        p = torch.sigmoid(logits)
        if factored:
            ce = sn.lerp_(sp.mul_(a / b) if a != b else sp, target)  # c / b
        else:
            ce = _scale_(sn, neg).lerp_(_scale_(sp, pos), target)
        slope: Tensor | None = None
        if gamma == 0.0:
            if needs_grad:
                slope = _scale_(p, neg).lerp_(_scale_(q, pos, -1.0), target)
            return _finish(ctx, "sigmoid_focal_loss", ce, slope, reduce, 5)
        u = torch.lerp(p, q, target, out=sp)
        full, low = _powers(u, gamma)
        if needs_grad:
            du = p * q
            if factored:  # (b (1 - t) p - a t q) / b = u - (a + b) / b * t q
                d_ce = torch.addcmul(u, target, q, value=-(a + b) / b, out=p)
            else:
                d_ce = _scale_(p, neg).lerp_(_scale_(q, pos, -1.0), target)
            du.addcmul_(du, target, value=-2.0)  # pq (1 - 2t) = du/dx
            if gamma < 1.0:
                if full is not None:
                    du.mul_(full)
                du.div_(u.clamp_min_(_tiny(u)))
            elif low is not None:
                du.mul_(low)
            slope = d_ce if full is None else d_ce.mul_(full)
            slope.addcmul_(ce, du, value=gamma)
        loss = ce if full is None else ce.mul_(full)
        return _finish(ctx, "sigmoid_focal_loss", loss, slope, reduce, 5, b if factored else 1.0)


class _Asymmetric(_Fused):
    r"""Per-element asymmetric loss (Ridnik et al.) and its derivative in one forward.

    With scales :math:`a, b`, the shifted probability :math:`p_m = \max(p - m, 0)`
    and :math:`n = -\log(1 - p_m)` (``-log(min(q + m, 1))``; :math:`s^-` if
    :math:`m = 0`):

    .. math::
        l = t\, a\, q^{\gamma_+} s^+ + (1 - t)\, b\, p_m^{\gamma_-} n

    .. math::
        \frac{d}{dx} q^{\gamma_+} s^+ = -q^{\gamma_+}\big(q + \gamma_+ p\, s^+\big), \qquad
        \frac{d}{dx} p^{\gamma_-} s^- = p^{\gamma_-}\big(p + \gamma_- q\, s^-\big)\ (m = 0),

    .. math::
        \frac{d}{dx} p_m^{\gamma_-} n = pq\, \big(\gamma_- n + r\big)\, F, \quad
        r = \frac{p_m}{q + m}, \quad
        F = \begin{cases} p_m^{\gamma_- - 1} & \gamma_- \ge 1 \\
            p_m^{\gamma_-} / \max(p_m, \text{tiny}) & \gamma_- < 1 \end{cases}\ (m > 0),

    zero where :math:`p \le m` (there :math:`p_m = r = n = 0`).
    """

    @staticmethod
    def forward(
        ctx: Any,
        logits: Tensor,
        target: Tensor,
        pos: Scale,
        neg: Scale,
        gamma_pos: float,
        gamma_neg: float,
        clip: float,
        reduce: bool,
    ) -> Tensor:
        needs_grad = ctx.needs_input_grad[0]
        nx = torch.neg(logits)
        sp = _softplus(nx)
        q = nx.sigmoid_()
        p = torch.sigmoid(logits)
        pos_full, _ = _powers(q, gamma_pos)
        pos_loss = sp * pos_full if pos_full is not None else sp.clone()
        slope: Tensor | None = None
        if clip > 0.0:
            shifted = torch.sub(p, clip).clamp_min_(0.0)
            not_shifted = torch.add(q, clip)
            ratio = torch.div(shifted, not_shifted) if needs_grad else None
            nl = not_shifted.clamp_max_(1.0).log_().neg_()
            neg_full, neg_low = _powers(shifted, gamma_neg)
            neg_loss = nl * neg_full if neg_full is not None else nl.clone()
            if needs_grad:
                assert ratio is not None
                d_neg = ratio.add_(nl, alpha=gamma_neg).mul_(p).mul_(q)
                if gamma_neg < 1.0:
                    if neg_full is not None:
                        d_neg.mul_(neg_full)
                    d_neg.div_(shifted.clamp_min_(_tiny(shifted)))
                elif neg_low is not None:
                    d_neg.mul_(neg_low)
        else:
            sn = _softplus(logits)
            neg_full, _ = _powers(p, gamma_neg)
            neg_loss = sn * neg_full if neg_full is not None else sn.clone()
            if needs_grad:
                d_neg = torch.addcmul(p, q, sn, value=gamma_neg)
                if neg_full is not None:
                    d_neg.mul_(neg_full)
        loss = _scale_(neg_loss, neg).lerp_(_scale_(pos_loss, pos), target)
        if needs_grad:
            d_pos = torch.addcmul(q, p, sp, value=gamma_pos, out=sp)
            if pos_full is not None:
                d_pos.mul_(pos_full)
            slope = _scale_(d_neg, neg).lerp_(_scale_(d_pos, pos, -1.0), target)
        return _finish(ctx, "asymmetric_loss", loss, slope, reduce, 7)


class _OneHotFocalRows(_Fused):
    r"""Per-row :math:`\sum_c u_c^\gamma\,\mathrm{BCE}(x_c, [c = y])` for one-hot targets.

    Every class is first treated as a negative (:math:`p^\gamma s^-`, derivative
    :math:`p^\gamma (p + \gamma q s^-)`, with :math:`q s^- = s^- - p s^-`), then
    the target column is overwritten with the positive term
    :math:`q^\gamma s^+` and its derivative :math:`-q^\gamma (q + \gamma p s^+)`,
    computed from the ``N`` gathered target logits only. No one-hot is built.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, index: Tensor, gamma: float) -> Tensor:
        needs_grad = ctx.needs_input_grad[0]
        index = index.unsqueeze(1)
        # (-x_t, x_t) stacked: one softplus and one sigmoid give s^+_t, q_t and p_t
        sign = torch.tensor([-1.0, 1.0], dtype=logits.dtype, device=logits.device)
        both = logits.gather(1, index).unsqueeze(0) * sign.view((2,) + (1,) * logits.dim())
        sp_t = _softplus(both)[0]
        q_t, p_t = torch.sigmoid(both).unbind(0)
        sn = _softplus(logits)
        p = torch.sigmoid(logits)
        full, _ = _powers(p, gamma)
        loss = sn * full if full is not None else sn.clone()
        q_full, _ = _powers(q_t, gamma)
        loss_t = sp_t * q_full if q_full is not None else sp_t
        rows = loss.scatter_(1, index, loss_t).sum(1)
        slope: Tensor | None = None
        if needs_grad:
            d_t = torch.addcmul(q_t, p_t, sp_t, value=gamma).neg_()
            if q_full is not None:
                d_t.mul_(q_full)
            if gamma == 0.0:
                slope = p
            else:
                slope = sn.addcmul_(p, sn, value=-1.0)  # q s^-
                torch.add(p, slope, alpha=gamma, out=slope)
                if full is not None:
                    slope.mul_(full)
            slope.scatter_(1, index, d_t)
        ctx.name = "class_balanced_loss (sigmoid/focal)"
        ctx.scale = 1.0
        ctx.num_args = 2
        ctx.rows = True
        ctx.save_for_backward(slope)
        return rows


def sigmoid_focal_terms(
    logits: Tensor, target: Tensor, pos: Scale, neg: Scale, gamma: float, reduce: bool
) -> Tensor:
    """Per-element (or summed, ``reduce``) weighted sigmoid focal loss (:class:`_SigmoidFocal`)."""
    out: Tensor = _SigmoidFocal.apply(  # type: ignore[no-untyped-call]
        logits, target, pos, neg, float(gamma), reduce
    )
    return out


def asymmetric_terms(
    logits: Tensor,
    target: Tensor,
    pos: Scale,
    neg: Scale,
    gamma_pos: float,
    gamma_neg: float,
    clip: float,
    reduce: bool,
) -> Tensor:
    """Per-element (or summed) weighted asymmetric loss; see :class:`_Asymmetric`."""
    out: Tensor = _Asymmetric.apply(  # type: ignore[no-untyped-call]
        logits, target, pos, neg, float(gamma_pos), float(gamma_neg), float(clip), reduce
    )
    return out


def one_hot_focal_rows(logits: Tensor, index: Tensor, gamma: float) -> Tensor:
    """Per-row sigmoid focal loss against one-hot targets; see :class:`_OneHotFocalRows`."""
    out: Tensor = _OneHotFocalRows.apply(logits, index, float(gamma))  # type: ignore[no-untyped-call]
    return out
