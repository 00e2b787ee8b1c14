r"""What a trial's ``weighting`` names, resolved once: class weights, loss and model options.

A weighting is one of

- ``"none"``: cross-entropy, every class weight 1;
- ``"power"``: cross-entropy with weights :math:`\propto n_c^{-\alpha}`, the
  strength sweep (``alpha`` from the trial's config);
- a weight scheme of :data:`weightlab.weights.SCHEMES` (``"balanced"``,
  ``"effective_number"``, ...): cross-entropy with that scheme's weights;
- a multi-class loss of :data:`weightlab.losses.LOSSES` (:data:`LOSS_WEIGHTINGS`,
  derived from the registry: every ``task="multiclass"`` entry without a
  ``lab_excluded`` reason): that loss with its defaults, the training split's
  class counts where it needs them, class weights 1, and the head its entry
  asks for. ``"ldam"`` asks for the cosine head: its scale ``s = 30`` is meant
  for cosine logits in ``[-1, 1]`` (Cao et al. 2019); on a plain linear head it
  multiplies every gradient by 30, which with SGD collapses the lab's models
  to one class.

:func:`resolve_weighting` turns a trial's config and the training counts into
one :class:`Weighting`; the runner, the engine, the diagnostics and the report
all use it. Its ``loss`` maps ``(logits (B, C), target (B,), class_weight
(C,))`` to the functional core's :class:`~weightlab.functional.LossParts`
(the weighted sum and its normaliser), so the weighted mean is
``parts.mean()`` everywhere. Weights are normalised to mean 1
(:func:`weightlab.weights.class_weights`), so the loss scale of every
weighting starts comparable.

A config's ``params`` (what a tuner varies) override the defaults: a
scheme's parameters (``beta`` of ``effective_number``), a loss's
(``gamma`` of ``focal``: the names and ranges of ``SCHEMES.params`` and
``LOSSES.params``) and ``drw_start`` (deferred re-weighting: the share of the epochs after which the
effective-number weights with ``beta=0.9999`` switch on, for a loss whose
entry has ``deferred_reweighting``). A literature loss that takes class
weights takes a config's ``alpha`` as the power of its class weights
(:math:`w_c \propto n_c^{-\alpha}`; ``None`` or 0: none), so focal *with*
class weights is ``focal`` with an ``alpha``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch

from weightlab.functional import LossParts
from weightlab.lab.trial import TrialConfig
from weightlab.losses import LOSSES, LossInfo

__all__ = [
    "DRW_BETA",
    "LOSS_WEIGHTINGS",
    "WEIGHTING_KEYS",
    "LabLoss",
    "Weighting",
    "cross_entropy_parts",
    "resolve_weighting",
    "weighting_label",
    "weighting_loss_name",
    "weighting_model_params",
    "weighting_names",
]

#: ``(logits (B, C), target (B,), class_weight (C,)) -> LossParts`` (sum and normaliser).
LabLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], LossParts]

#: Registry losses a study can use as a weighting, in registration order.
LOSS_WEIGHTINGS: tuple[str, ...] = tuple(
    name
    for name in LOSSES.names()
    if LOSSES.info(name).task == "multiclass" and not LOSSES.info(name).lab_excluded
)


def cross_entropy_parts(
    logits: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor
) -> LossParts:
    r"""The lab's cross-entropy as parts: :math:`(\sum_i w_{y_i} \ell_i,\ \sum_i w_{y_i})`.

    :math:`\ell_i = \operatorname{logsumexp}(z_i) - z_{i, y_i}`, the fused form
    (2.7x faster than ``log_softmax`` + ``gather`` for C = 10 on the CPU); it
    equals ``weightlab.functional.cross_entropy(..., class_weight=w,
    reduction="parts")`` to float rounding, and ``parts.mean()`` is
    ``nn.CrossEntropyLoss(weight=w)``. Also takes a leading slice axis
    ``(K, B, C)``, ``(K, B)``, ``(K, C)`` (the engine's stacked call).

    Example:
        >>> z, y, w = torch.tensor([[0.0, 0.0]]), torch.tensor([1]), torch.tensor([1.0, 3.0])
        >>> parts = cross_entropy_parts(z, y, w)
        >>> round(parts.total.item(), 4), parts.normalizer.item()  # 3 * log 2, 3
        (2.0794, 3.0)
    """
    nll = logits.logsumexp(-1) - logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    applied = class_weight.gather(-1, target)
    return LossParts((nll * applied).sum(-1), applied.sum(-1))


def _mark_cross_entropy() -> None:
    from weightlab.lab.loss_kernel import SoftmaxForm

    cross_entropy_parts.form = SoftmaxForm()  # type: ignore[attr-defined]


_mark_cross_entropy()


def _registry_parts(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weight: torch.Tensor,
    *,
    functional: Callable[..., Any],
    weight_arg: str | None,
    counts: torch.Tensor | None,
    **params: float,
) -> LossParts:
    """A registered loss's ``reduction="parts"``, class weights passed as its entry says."""
    kw: dict[str, Any] = dict(params)
    if counts is not None:
        kw["counts"] = counts
    if weight_arg == "class_weight":
        kw["class_weight"] = class_weight
    elif weight_arg == "sample_weight":
        kw["sample_weight"] = class_weight[target]
    out = functional(logits, target, reduction="parts", validate_args=False, **kw)
    return cast(LossParts, out)


@functools.lru_cache(maxsize=256)
def _literature_loss(
    name: str, counts: tuple[int, ...], params: tuple[tuple[str, float], ...] = ()
) -> LabLoss:
    """One loss object per (loss, counts, params): slices sharing it are computed together."""
    from weightlab.lab.loss_kernel import softmax_form

    info: LossInfo = LOSSES.info(name)
    tensor = torch.tensor(counts, dtype=torch.float64) if info.needs_counts else None
    kwargs: dict[str, Any] = {"functional": info.functional, "weight_arg": info.class_weight,
                              "counts": tensor, **dict(params)}  # fmt: skip
    loss = functools.partial(_registry_parts, **kwargs)
    # the engine computes every slice with a form in one batched call (lab.loss_kernel)
    loss.form = softmax_form(name, counts, dict(params))  # type: ignore[attr-defined]
    return loss


#: The ``params`` keys that are not a scheme's or a loss's own parameter.
WEIGHTING_KEYS = ("drw_start",)
#: Effective-number ``beta`` of the late weights of deferred re-weighting (Cao et al. 2019).
DRW_BETA = 0.9999


@dataclass(frozen=True)
class Weighting:
    """A trial's weighting, resolved: everything that trains and diagnoses it.

    Attributes:
        name: the config's weighting (``"power"``, ``"focal"``).
        label: as the summary shows it (``"power(a=0.5)"``).
        class_weight: class weights ``(C,)``, mean 1 (ones for a literature loss).
        loss: the per-batch loss as parts (see :data:`LabLoss`).
        loss_name: the registry loss it trains (``"cross_entropy"`` or the literature loss).
        model_params: model options it asks for (``{"head": "cosine"}`` for ``"ldam"``).
        drw_start: deferred re-weighting: the share of the epochs after which
            ``late_class_weight`` replaces ``class_weight`` (``None``: never).
        late_class_weight: the class weights from then on, ``(C,)``, or ``None``.
    """

    name: str
    label: str
    class_weight: npt.NDArray[np.float64]
    loss: LabLoss
    loss_name: str
    model_params: dict[str, Any]
    drw_start: float | None = None
    late_class_weight: npt.NDArray[np.float64] | None = None

    def drw_epoch(self, epochs: int) -> int:
        """The first epoch (0-based) of the late weights in a run of ``epochs`` (``epochs``: never).

        Example:
            >>> w = resolve_weighting(TrialConfig("d", "mlp", "sgd", "ldam", None, 0,
            ...                       params=(("drw_start", 0.8),)), [30, 10])
            >>> w.drw_epoch(10), w.late_class_weight.round(3).tolist()
            (8, [0.5, 1.5])
        """
        if self.drw_start is None or self.late_class_weight is None:
            return epochs
        return min(epochs, round(self.drw_start * epochs))


def weighting_names() -> list[str]:
    """Every name a study accepts as a weighting.

    Example:
        >>> names = weighting_names()
        >>> names[:2], "balanced" in names, "ldam" in names
        (['none', 'power'], True, True)
    """
    from weightlab.weights import SCHEMES

    schemes = [n for n in SCHEMES.names() if n not in ("none", "power")]
    return ["none", "power", *schemes, *LOSS_WEIGHTINGS]


def weighting_label(config: TrialConfig) -> str:
    """The weighting as the summary shows it: ``"balanced"``, ``"power(a=0.5)"``, ``"focal(gamma=1)"``.

    Example:
        >>> weighting_label(TrialConfig("d", "mlp", "sgd", "power", 0.5, 0))
        'power(a=0.5)'
        >>> weighting_label(TrialConfig("d", "mlp", "sgd", "focal", 1.0, 0, params=(("gamma", 1.5),)))
        'focal(a=1, gamma=1.5)'
    """  # noqa: E501
    args = [f"a={config.alpha:.4g}"] if config.alpha is not None else []
    for key, value in config.params:
        args.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return f"{config.weighting}({', '.join(args)})" if args else config.weighting


def weighting_loss_name(weighting: str) -> str:
    """The registry loss a weighting trains: the literature loss, else ``"cross_entropy"``."""
    return weighting if weighting in LOSS_WEIGHTINGS else "cross_entropy"


def weighting_model_params(weighting: str) -> dict[str, str]:
    """Model options a weighting asks for (its loss entry's head): ``{"head": "cosine"}`` for LDAM.

    A study merges them under the user's ``model_params`` (the user's win).

    Example:
        >>> weighting_model_params("ldam"), weighting_model_params("balanced")
        ({'head': 'cosine'}, {})
    """
    head = LOSSES.info(weighting_loss_name(weighting)).head
    return {} if head == "linear" else {"head": head}


def _class_weights(config: TrialConfig, counts: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    from weightlab.weights import class_weights

    params = dict(config.params)
    if config.weighting in LOSS_WEIGHTINGS:
        takes = LOSSES.info(config.weighting).class_weight is not None
        if not takes or not config.alpha:
            return np.ones(counts.shape[0], dtype=np.float64)
        return np.asarray(class_weights(counts, "power", alpha=config.alpha), dtype=np.float64)
    if config.weighting == "none":
        return np.ones(counts.shape[0], dtype=np.float64)
    if config.weighting == "power":
        alpha = cast(float, config.alpha)  # None is refused by class_weights with a clear message
        return np.asarray(class_weights(counts, "power", alpha=alpha), dtype=np.float64)
    return np.asarray(class_weights(counts, config.weighting, **params), dtype=np.float64)


def _loss_params(config: TrialConfig) -> tuple[tuple[str, float], ...]:
    """The config's parameters that its loss's functional takes (sorted items)."""
    return tuple((k, v) for k, v in config.params if k not in WEIGHTING_KEYS)


def resolve_weighting(config: TrialConfig, train_counts: npt.ArrayLike) -> Weighting:
    """Resolve a trial's weighting against the training split's class counts, once.

    ``"none"`` and the literature losses get class weights of ones;
    ``"power"`` gets ``class_weights(counts, "power", alpha=config.alpha)``; a
    scheme gets ``class_weights(counts, scheme)`` with its default parameters.
    The loss is :func:`cross_entropy_parts` unless the weighting is a
    literature loss.

    Raises:
        InvalidValueError, UnknownNameError: from the weight scheme (e.g.
            ``"power"`` without ``alpha``, an unknown scheme).

    Example:
        >>> w = resolve_weighting(TrialConfig("d", "mlp", "sgd", "power", 1.0, 0), [30, 10])
        >>> w.label, w.class_weight.round(3).tolist(), w.loss_name
        ('power(a=1)', [0.5, 1.5], 'cross_entropy')
        >>> ldam = resolve_weighting(TrialConfig("d", "mlp", "sgd", "ldam", None, 0), [30, 10])
        >>> ldam.class_weight.tolist(), ldam.model_params
        ([1.0, 1.0], {'head': 'cosine'})
        >>> ldam.loss(torch.zeros(2, 2), torch.tensor([0, 1]), torch.ones(2)).normalizer.item()
        2.0
    """
    from weightlab.weights import class_weights

    counts = np.asarray(train_counts)
    loss_name = weighting_loss_name(config.weighting)
    if loss_name == "cross_entropy":
        loss: LabLoss = cross_entropy_parts
    else:
        loss = _literature_loss(loss_name, tuple(int(c) for c in counts), _loss_params(config))
    drw = dict(config.params).get("drw_start")
    late = None
    if drw is not None and float(drw) < 1.0:
        late = np.asarray(
            class_weights(counts, "effective_number", beta=DRW_BETA), dtype=np.float64
        )
    return Weighting(
        name=config.weighting,
        label=weighting_label(config),
        class_weight=_class_weights(config, counts),
        loss=loss,
        loss_name=loss_name,
        model_params=weighting_model_params(config.weighting),
        drw_start=None if late is None or drw is None else float(drw),
        late_class_weight=late,
    )
