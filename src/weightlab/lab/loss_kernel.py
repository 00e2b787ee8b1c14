r"""Every lab weighting's loss as one softmax kernel, so a stack computes all its slices at once.

Each softmax loss the lab trains is a case of

.. math::
    \ell_i = a_i\,(1 - p_i)^{\gamma}\,(-\log p_i), \qquad
    p_i = \operatorname{softmax}\big(s\,(x_i + b - m_{y_i} e_{y_i})\big)_{y_i},
    \qquad a_i = w_{y_i}\, v_{y_i}

with a scale ``s``, a logit offset ``b`` (C,), a target margin ``m`` (C,), a
focal exponent ``gamma``, the slice's class weights ``w`` and a loss-owned
per-class factor ``v``; the mean divides by :math:`\sum_i a_i`
(``normalize="weight"``) or by the row count (``"count"``):

=================  ========================================================================
loss               its form (defaults from its registry entry's parameters)
=================  ========================================================================
cross_entropy      ``s=1``, nothing else
focal              ``gamma``
logit_adjusted     ``b = tau log pi`` (pi: the training prior)
balanced_softmax   ``b = log pi``
ldam               ``s``, ``m = margins_from_counts(counts, max_m)``
class_balanced     ``v = effective_number_weights(counts, beta)``, ``"count"``
=================  ========================================================================

:func:`softmax_form` builds a loss's :class:`SoftmaxForm` with the
functional core's own helpers (margins, prior, effective-number weights);
:func:`stacked_form_parts` evaluates K slices, each with its own form, in one
autograd pass over ``(K, B, C)`` logits. ``tests/test_lab_loss_kernel.py``
checks it against each loss's functional, value and gradient, for every lab
weighting. A loss without a form (a user's) is computed slice by slice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from weightlab.functional import LossParts

__all__ = ["FORMS", "SoftmaxForm", "softmax_form", "stacked_form_parts"]

#: The smallest ``1 - p`` the focal factor is taken at (its gradient is 0 below it, as the
#: exact one tends to 0 there).
_TINY = 1e-12


@dataclass(frozen=True)
class SoftmaxForm:
    """One slice's loss as the lab's softmax kernel (see the module docstring).

    Attributes:
        scale: ``s``.
        offset: ``b`` (C,), or ``None`` for zeros.
        margin: ``m`` (C,), or ``None`` for zeros.
        gamma: the focal exponent.
        factor: ``v`` (C,), or ``None`` for ones.
        normalize: ``"weight"`` or ``"count"``.
    """

    scale: float = 1.0
    offset: npt.NDArray[np.float64] | None = None
    margin: npt.NDArray[np.float64] | None = None
    gamma: float = 0.0
    factor: npt.NDArray[np.float64] | None = None
    normalize: Literal["weight", "count"] = "weight"


def _param(name: str, params: Mapping[str, Any], key: str) -> float:
    from weightlab.losses import LOSSES

    return float(params.get(key, LOSSES.params(name)[key].default))


def _prior(counts: npt.NDArray[Any]) -> torch.Tensor:
    from weightlab.functional._imbalance import log_prior

    return log_prior(torch.as_tensor(counts, dtype=torch.float64))


def softmax_form(
    name: str, counts: Sequence[int] | npt.ArrayLike, params: Mapping[str, Any] | None = None
) -> SoftmaxForm | None:
    """The :class:`SoftmaxForm` of registry loss ``name`` with ``params``, or ``None`` (no form).

    Example:
        >>> f = softmax_form("ldam", [16, 1], {"max_m": 0.5})
        >>> f.scale, f.margin.tolist()
        (30.0, [0.25, 0.5])
        >>> softmax_form("focal", [16, 1]).gamma
        2.0
    """
    from weightlab.functional._imbalance import effective_number_weights
    from weightlab.functional.ldam import margins_from_counts

    p = dict(params or {})
    n = np.asarray(counts, dtype=np.float64)
    if name == "cross_entropy":
        return SoftmaxForm()
    if name == "focal":
        return SoftmaxForm(gamma=_param(name, p, "gamma"))
    if name == "logit_adjusted":
        return SoftmaxForm(offset=(_param(name, p, "tau") * _prior(n)).numpy())
    if name == "balanced_softmax":
        return SoftmaxForm(offset=_prior(n).numpy())
    if name == "ldam":
        max_m = _param(name, p, "max_m")
        margin = margins_from_counts(torch.as_tensor(n), max_m).numpy() if max_m else None
        return SoftmaxForm(scale=_param(name, p, "s"), margin=margin)
    if name == "class_balanced":
        v = effective_number_weights(torch.as_tensor(n), _param(name, p, "beta")).numpy()
        return SoftmaxForm(factor=v, normalize="count")
    return None


#: The registry losses :func:`softmax_form` knows.
FORMS = ("cross_entropy", "focal", "logit_adjusted", "balanced_softmax", "ldam", "class_balanced")


@dataclass(frozen=True)
class _Stacked:
    """K forms as tensors: ``s``, ``gamma``, count (K,); ``b``, ``m``, ``v`` (K, C); or None."""

    scale: torch.Tensor | None
    offset: torch.Tensor | None
    margin: torch.Tensor | None
    gamma: torch.Tensor | None
    factor: torch.Tensor | None
    count: torch.Tensor | None

    def to(self, like: torch.Tensor) -> _Stacked:
        """The same forms in the dtype and on the device of ``like`` (the logits)."""
        tensors = (self.scale, self.offset, self.margin, self.gamma, self.factor, self.count)
        if all(
            t is None or (t.device == like.device and t.dtype in (like.dtype, torch.bool))
            for t in tensors
        ):
            return self

        def cast(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(like.device, like.dtype)

        count = None if self.count is None else self.count.to(like.device)
        return _Stacked(
            cast(self.scale),
            cast(self.offset),
            cast(self.margin),
            cast(self.gamma),
            cast(self.factor),
            count,
        )


def stack_forms(
    forms: Sequence[SoftmaxForm], c: int, dtype: torch.dtype = torch.float32
) -> _Stacked:
    """The tensors :func:`stacked_form_parts` takes, ``None`` where every slice has the default."""

    def rows(get: Any, fill: float) -> torch.Tensor | None:
        vals = [get(f) for f in forms]
        if all(v is None for v in vals):
            return None
        return torch.tensor(
            np.stack([np.full(c, fill) if v is None else v for v in vals]), dtype=dtype
        )

    scale = [f.scale for f in forms]
    gamma = [f.gamma for f in forms]
    count = [f.normalize == "count" for f in forms]
    return _Stacked(
        scale=None if all(s == 1.0 for s in scale) else torch.tensor(scale, dtype=dtype),
        offset=rows(lambda f: f.offset, 0.0),
        margin=rows(lambda f: f.margin, 0.0),
        gamma=None if all(g == 0.0 for g in gamma) else torch.tensor(gamma, dtype=dtype),
        factor=rows(lambda f: f.factor, 1.0),
        count=torch.tensor(count) if any(count) else None,
    )


def stacked_form_parts(
    logits: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor, forms: _Stacked
) -> LossParts:
    r"""K slices' losses as parts: logits (K, B, C), targets (K, B), class weights (K, C) -> (K,).

    See the module docstring for the formula; ``forms`` from :func:`stack_forms`.
    """
    z = logits
    if forms.offset is not None:
        z = z + forms.offset.unsqueeze(1)
    tgt = target.unsqueeze(-1)
    if forms.margin is not None:
        m = forms.margin.gather(-1, target)  # (K, B): the target class's margin
        z = z - torch.zeros_like(z).scatter_(-1, tgt, m.unsqueeze(-1))
    if forms.scale is not None:
        z = z * forms.scale.view(-1, 1, 1)
    log_p = z.gather(-1, tgt).squeeze(-1) - z.logsumexp(-1)
    applied = class_weight.gather(-1, target)
    if forms.factor is not None:
        applied = applied * forms.factor.gather(-1, target)
    nll = -log_p
    if forms.gamma is not None:
        q = torch.expm1(log_p).neg().clamp_min(_TINY)
        nll = nll * q.pow(forms.gamma.view(-1, 1))
    total = (nll * applied).sum(-1)
    normalizer = applied.sum(-1)
    if forms.count is not None:
        rows = torch.full_like(normalizer, float(target.shape[-1]))
        normalizer = torch.where(forms.count, rows, normalizer)
    return LossParts(total, normalizer)
