"""One case per registered loss: how to call it, and an independent float64 reference.

Each :class:`LossCase` names a loss in ``weightlab.losses.LOSSES`` and gives

- ``fn``: the weightlab functional, called as ``fn(x, target, **kwargs)``;
- ``module_kwargs``/``fn_kwargs``: the same settings for module and function;
- ``reference``: the loss written straight from the paper in float64 with
  plain torch ops (one-hot targets, the full formula over all classes), taking
  the same kwargs; it returns the ``"mean"`` reduction with the loss's default
  normalisation;
- ``configs``: kwargs the reference test runs through.

``tests/test_losses_registry.py`` runs every case through one checklist and
fails if a registered loss has no case here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

import weightlab.functional as WF

C = 5
L = 4
COUNTS = [50.0, 20.0, 10.0, 4.0, 1.0]
IGNORE = -100


# ---------------------------------------------------------------- references (float64)


def _one_hot(y: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    kept = y != IGNORE
    safe = torch.where(kept, y, torch.zeros_like(y))
    oh = F.one_hot(safe, num_classes).to(torch.float64)
    if oh.dim() > 2:  # (N, d, C) -> (N, C, d)
        oh = oh.movedim(-1, 1)
    return oh, kept.to(torch.float64)


def _class_vec(v: Any, ndim: int) -> Tensor:
    t = torch.as_tensor(v, dtype=torch.float64)
    return t.view((1, -1) + (1,) * (ndim - 2))


def _per_sample(sample_weight: Any, like: Tensor) -> Tensor:
    sw = torch.as_tensor(sample_weight, dtype=torch.float64)
    return sw.view((-1,) + (1,) * (like.dim() - 1))


def _weighted_mean(loss: Tensor, applied: Tensor) -> Tensor:
    return loss.sum() / applied.sum()


def _softmax_ref(
    x: Tensor,
    y: Tensor,
    *,
    transform: Callable[[Tensor, Tensor], Tensor] = lambda z, oh: z,
    modulate: Callable[[Tensor], Tensor] = lambda pt: torch.ones_like(pt),
    class_weight: Any = None,
    sample_weight: Any = None,
    normalize: str = "weight",
) -> Tensor:
    oh, kept = _one_hot(y, x.shape[1])
    z = transform(x, oh)
    p = torch.exp(z) / torch.exp(z).sum(1, keepdim=True)
    pt = (p * oh).sum(1)
    w = kept if class_weight is None else (_class_vec(class_weight, x.dim()) * oh).sum(1) * kept
    if sample_weight is not None:
        w = w * _per_sample(sample_weight, w)
    loss = -w * modulate(pt) * torch.log(pt)
    return _weighted_mean(loss, w if normalize == "weight" else kept)


def ref_cross_entropy(x: Tensor, y: Tensor, **kw: Any) -> Tensor:
    return _softmax_ref(x, y, **kw)


def ref_focal(x: Tensor, y: Tensor, *, gamma: float, **kw: Any) -> Tensor:
    return _softmax_ref(x, y, modulate=lambda pt: (1 - pt) ** gamma, **kw)


def ref_logit_adjusted(x: Tensor, y: Tensor, *, counts: Any, tau: float, **kw: Any) -> Tensor:
    n = torch.as_tensor(counts, dtype=torch.float64)
    log_pi = _class_vec(torch.log(n / n.sum()), x.dim())
    return _softmax_ref(x, y, transform=lambda z, oh: z + tau * log_pi, **kw)


def ref_balanced_softmax(x: Tensor, y: Tensor, counts: Any, **kw: Any) -> Tensor:
    # n_y e^{x_y} / sum_c n_c e^{x_c}, written out
    oh, kept = _one_hot(y, x.shape[1])
    n = _class_vec(counts, x.dim())
    e = n * torch.exp(x)
    pt = (e * oh).sum(1) / e.sum(1)
    cw = kw.get("class_weight")
    w = kept if cw is None else (_class_vec(cw, x.dim()) * oh).sum(1) * kept
    if kw.get("sample_weight") is not None:
        w = w * _per_sample(kw["sample_weight"], w)
    return (-w * torch.log(pt)).sum() / w.sum()


def ref_ldam(x: Tensor, y: Tensor, counts: Any, *, max_m: float, s: float, **kw: Any) -> Tensor:
    n = torch.as_tensor(counts, dtype=torch.float64)
    m = 1.0 / n**0.25
    m = m * (max_m / m.max())
    mv = _class_vec(m, x.dim())
    return _softmax_ref(x, y, transform=lambda z, oh: s * (z - mv * oh), **kw)


def _cb_weights(counts: Any, beta: float) -> list[float]:
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    return [len(raw) * r / sum(raw) for r in raw]


def ref_class_balanced(
    x: Tensor,
    y: Tensor,
    counts: Any,
    *,
    beta: float,
    loss_type: str = "softmax",
    gamma: float = 2.0,
    sample_weight: Any = None,
) -> Tensor:
    w = _cb_weights(counts, beta)
    oh, kept = _one_hot(y, x.shape[1])
    wy = (_class_vec(w, x.dim()) * oh).sum(1) * kept
    if sample_weight is not None:
        wy = wy * _per_sample(sample_weight, wy)
    if loss_type == "softmax":
        p = torch.exp(x) / torch.exp(x).sum(1, keepdim=True)
        per = -torch.log((p * oh).sum(1))
    else:  # Cui et al.'s code: BCE on one-hot, modulator, summed over classes
        p = torch.sigmoid(x)
        bce = -(oh * torch.log(p) + (1 - oh) * torch.log(1 - p))
        g = gamma if loss_type == "focal" else 0.0
        pt = p * oh + (1 - p) * (1 - oh)
        per = (bce * (1 - pt) ** g).sum(1)
    return (wy * per).sum() / kept.sum()


def _binary_parts(x: Tensor, t: Tensor, class_weight: Any) -> tuple[Tensor, Tensor]:
    if class_weight is None:
        return torch.ones(()), torch.ones(())
    cw = torch.as_tensor(class_weight, dtype=torch.float64)
    if cw.dim() == 1:
        return cw[0], cw[1]
    return _class_vec(cw[:, 0], x.dim()), _class_vec(cw[:, 1], x.dim())


def _binary_mean(loss: Tensor, sample_weight: Any, x: Tensor) -> Tensor:
    if sample_weight is not None:
        sw = torch.as_tensor(sample_weight, dtype=torch.float64)
        loss = loss * sw.view((-1,) + (1,) * (x.dim() - 1))
    return loss.sum() / loss.numel()


def ref_binary_cross_entropy(
    x: Tensor, t: Tensor, *, class_weight: Any = None, sample_weight: Any = None
) -> Tensor:
    wn, wp = _binary_parts(x, t, class_weight)
    p = torch.sigmoid(x)
    loss = -(wp * t * torch.log(p) + wn * (1 - t) * torch.log(1 - p))
    return _binary_mean(loss, sample_weight, x)


def ref_sigmoid_focal(
    x: Tensor,
    t: Tensor,
    *,
    gamma: float,
    alpha: float | None = None,
    class_weight: Any = None,
    sample_weight: Any = None,
) -> Tensor:
    # torchvision.ops.sigmoid_focal_loss, with class weights on the two terms
    wn, wp = _binary_parts(x, t, class_weight)
    p = torch.sigmoid(x)
    a = 1.0 if alpha is None else alpha
    b = 1.0 if alpha is None else 1 - alpha
    ce = -(a * wp * t * torch.log(p) + b * wn * (1 - t) * torch.log(1 - p))
    p_t = p * t + (1 - p) * (1 - t)
    return _binary_mean(ce * (1 - p_t) ** gamma, sample_weight, x)


def ref_asymmetric(
    x: Tensor,
    t: Tensor,
    *,
    gamma_neg: float,
    gamma_pos: float,
    clip: float,
    class_weight: Any = None,
    sample_weight: Any = None,
) -> Tensor:
    # Ridnik et al.'s AsymmetricLoss code (0/1 targets), then a mean
    wn, wp = _binary_parts(x, t, class_weight)
    xs_pos = torch.sigmoid(x)
    xs_neg = (1 - xs_pos + clip).clamp(max=1)
    los_pos = wp * t * torch.log(xs_pos)
    los_neg = wn * (1 - t) * torch.log(xs_neg)
    pt = xs_pos * t + xs_neg * (1 - t)
    gamma = gamma_pos * t + gamma_neg * (1 - t)
    loss = -(los_pos + los_neg) * torch.pow(1 - pt, gamma)
    return _binary_mean(loss, sample_weight, x)


# ---------------------------------------------------------------- cases


@dataclass
class LossCase:
    name: str
    kind: str  # "multiclass" (class-index targets) or "multilabel" (0/1 targets)
    fn: Callable[..., Any]
    reference: Callable[..., Tensor]
    fn_kwargs: dict[str, Any]
    module_kwargs: dict[str, Any]
    configs: list[dict[str, Any]] = field(default_factory=list)
    buffers: tuple[str, ...] = ()

    def call(self, x: Tensor, target: Tensor, **overrides: Any) -> Any:
        return self.fn(x, target, **{**self.fn_kwargs, **overrides})


W5 = [1.0, 2.0, 0.5, 3.0, 1.5]
CW_ML = [[1.0, 2.0], [0.5, 1.0], [1.0, 1.0], [2.0, 0.25]]

CASES: dict[str, LossCase] = {
    c.name: c
    for c in [
        LossCase(
            "cross_entropy", "multiclass", WF.cross_entropy, ref_cross_entropy,
            {}, {},
            [{}, {"class_weight": W5}],
            (),
        ),
        LossCase(
            "binary_cross_entropy", "multilabel", WF.binary_cross_entropy,
            ref_binary_cross_entropy, {}, {},
            [{}, {"class_weight": [1.0, 3.0]}, {"class_weight": CW_ML}],
        ),
        LossCase(
            "focal", "multiclass", WF.focal_loss, ref_focal,
            {"gamma": 2.0, "class_weight": W5}, {"gamma": 2.0, "class_weight": W5},
            [{"gamma": 2.0}, {"gamma": 0.5, "class_weight": W5}, {"gamma": 3.0}],
            ("class_weight",),
        ),
        LossCase(
            "sigmoid_focal", "multilabel", WF.sigmoid_focal_loss, ref_sigmoid_focal,
            {"gamma": 2.0, "alpha": 0.25, "class_weight": [1.0, 2.0]},
            {"gamma": 2.0, "alpha": 0.25, "class_weight": [1.0, 2.0]},
            [{"gamma": 2.0, "alpha": 0.25}, {"gamma": 0.5}, {"gamma": 1.0, "class_weight": CW_ML}],
            ("class_weight",),
        ),
        LossCase(
            "logit_adjusted", "multiclass", WF.logit_adjusted_loss, ref_logit_adjusted,
            {"counts": COUNTS, "tau": 1.5}, {"counts": COUNTS, "tau": 1.5},
            [{"counts": COUNTS, "tau": 1.0}, {"counts": COUNTS, "tau": 0.7, "class_weight": W5}],
            ("prior",),
        ),
        LossCase(
            "balanced_softmax", "multiclass",
            lambda x, y, **kw: WF.balanced_softmax_loss(x, y, COUNTS, **kw),
            lambda x, y, **kw: ref_balanced_softmax(x, y, COUNTS, **kw),
            {}, {"counts": COUNTS},
            [{}, {"class_weight": W5}],
            ("counts",),
        ),
        LossCase(
            "ldam", "multiclass",
            lambda x, y, **kw: WF.ldam_loss(x, y, COUNTS, **kw),
            lambda x, y, **kw: ref_ldam(x, y, COUNTS, **kw),
            {"max_m": 0.5, "s": 5.0}, {"counts": COUNTS, "max_m": 0.5, "s": 5.0},
            [{"max_m": 0.5, "s": 5.0}, {"max_m": 0.3, "s": 2.0, "class_weight": W5}],
            ("counts",),
        ),
        LossCase(
            "class_balanced", "multiclass",
            lambda x, y, **kw: WF.class_balanced_loss(x, y, COUNTS, **kw),
            lambda x, y, **kw: ref_class_balanced(x, y, COUNTS, **kw),
            {"beta": 0.9, "loss_type": "focal"},
            {"counts": COUNTS, "beta": 0.9, "loss_type": "focal"},
            [
                {"beta": 0.9, "loss_type": "softmax"},
                {"beta": 0.99, "loss_type": "sigmoid"},
                {"beta": 0.9, "loss_type": "focal", "gamma": 1.5},
            ],
            ("counts",),
        ),
        LossCase(
            "asymmetric", "multilabel", WF.asymmetric_loss, ref_asymmetric,
            {"gamma_neg": 4.0, "gamma_pos": 1.0, "clip": 0.05},
            {"gamma_neg": 4.0, "gamma_pos": 1.0, "clip": 0.05},
            [
                {"gamma_neg": 4.0, "gamma_pos": 1.0, "clip": 0.05},
                {"gamma_neg": 2.0, "gamma_pos": 0.0, "clip": 0.2, "class_weight": CW_ML},
            ],
        ),
    ]
}


def make_inputs(
    case: LossCase, n: int = 8, dtype: torch.dtype = torch.float64, seed: int = 0, extra: int = 0
) -> tuple[Tensor, Tensor]:
    """Logits and targets for a case; ``extra`` adds a spatial dimension of that size."""
    g = torch.Generator().manual_seed(seed)
    width = C if case.kind == "multiclass" else L
    shape = (n, width) + ((extra,) if extra else ())
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2).to(dtype)
    if case.kind == "multiclass":
        y = torch.randint(0, C, (n,) + ((extra,) if extra else ()), generator=g)
        return x, y
    t = (torch.rand(shape, generator=g) > 0.6).to(torch.float64).to(dtype)
    return x, t


def all_ignored(case: LossCase, x: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Any]]:
    """A target where nothing counts: every class index ignored, or all sample weights 0."""
    if case.kind == "multiclass":
        return torch.full_like(target, IGNORE), {}
    return target, {"sample_weight": torch.zeros(x.shape[0], dtype=x.dtype), "normalize": "weight"}


def finite(t: Tensor) -> bool:
    return bool(torch.isfinite(t).all())


__all__ = ["CASES", "LossCase", "all_ignored", "finite", "make_inputs", "math"]
