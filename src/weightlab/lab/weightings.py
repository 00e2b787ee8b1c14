r"""What a trial's ``weighting`` names: its class weights and its per-sample loss.

A weighting is one of

- ``"none"``: plain cross-entropy, every class weight 1;
- ``"power"``: cross-entropy with weights :math:`\propto n_c^{-\alpha}`, the
  strength sweep (``alpha`` from the trial's config);
- a weight scheme of :data:`weightlab.weights.SCHEMES` (``"balanced"``,
  ``"effective_number"``, ...): cross-entropy with that scheme's weights;
- a multi-class loss of the literature (:data:`LOSS_WEIGHTINGS`): that loss,
  with its defaults and the training split's class counts, class weights 1.
  ``"ldam"`` also asks for the cosine head (:func:`weighting_model_params`):
  its scale ``s = 30`` is meant for cosine logits in ``[-1, 1]`` (Cao et al.
  2019); on a plain linear head it multiplies every gradient by 30, which with
  SGD collapses the lab's models to one class.

Weights are normalised to mean 1 (:func:`weightlab.weights.class_weights`), so
the loss scale of every weighting starts comparable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import cast

import numpy as np
import numpy.typing as npt
import torch

from weightlab.lab.trial import TrialConfig

__all__ = [
    "LOSS_WEIGHTINGS",
    "trial_class_weights",
    "trial_loss_fn",
    "weighting_model_params",
    "weighting_names",
]

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

#: Literature losses a study can use as a weighting (multi-class ones only).
LOSS_WEIGHTINGS: tuple[str, ...] = (
    "focal",
    "class_balanced",
    "logit_adjusted",
    "balanced_softmax",
    "ldam",
)


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


def trial_class_weights(
    config: TrialConfig, train_counts: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Return the class weights of one trial, shape ``(C,)``, normalised to mean 1.

    ``"none"`` and the literature losses give ones; ``"power"`` gives
    ``class_weights(counts, "power", alpha=config.alpha)``; any other name is a
    scheme of :data:`weightlab.weights.SCHEMES` with its default parameters.

    Example:
        >>> cfg = TrialConfig("d", "mlp", "sgd", "power", 1.0, 0)
        >>> trial_class_weights(cfg, [30, 10]).round(3).tolist()
        [0.5, 1.5]
    """
    from weightlab.weights import class_weights

    counts = np.asarray(train_counts)
    if config.weighting == "none" or config.weighting in LOSS_WEIGHTINGS:
        return np.ones(counts.shape[0], dtype=np.float64)
    if config.weighting == "power":
        alpha = cast(float, config.alpha)  # None is refused by class_weights with a clear message
        return np.asarray(class_weights(counts, "power", alpha=alpha), dtype=np.float64)
    return np.asarray(class_weights(counts, config.weighting), dtype=np.float64)


def weighting_model_params(weighting: str) -> dict[str, str]:
    """Model options a weighting asks for: ``{"head": "cosine"}`` for ``"ldam"``, else none.

    A study merges them under the user's ``model_params`` (the user's win).

    Example:
        >>> weighting_model_params("ldam"), weighting_model_params("balanced")
        ({'head': 'cosine'}, {})
    """
    return {"head": "cosine"} if weighting == "ldam" else {}


def trial_loss_fn(config: TrialConfig, train_counts: npt.ArrayLike) -> LossFn | None:
    """The per-sample loss of a literature-loss weighting, or ``None`` for cross-entropy.

    The returned ``loss(logits, target, class_weight)`` gives per-sample losses
    (``reduction="none"``) as the engine wants them (``weightlab.lab.engine.LossFn``).

    Example:
        >>> fn = trial_loss_fn(TrialConfig("d", "mlp", "sgd", "focal", None, 0), [30, 10])
        >>> fn(torch.zeros(2, 2), torch.tensor([0, 1]), torch.ones(2)).shape
        torch.Size([2])
    """
    if config.weighting not in LOSS_WEIGHTINGS:
        return None
    counts = torch.as_tensor(np.asarray(train_counts, dtype=np.float64))
    return functools.partial(_LOSSES[config.weighting], counts=counts)


def _values(out: object) -> torch.Tensor:
    """A loss's ``reduction="none"`` output: the per-sample values (never ``LossParts``)."""
    assert isinstance(out, torch.Tensor)
    return out


def _focal(
    z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, *, counts: torch.Tensor
) -> torch.Tensor:
    from weightlab.functional import focal_loss

    return _values(focal_loss(z, y, class_weight=w, reduction="none", validate_args=False))


def _class_balanced(
    z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, *, counts: torch.Tensor
) -> torch.Tensor:
    from weightlab.functional import class_balanced_loss

    return _values(class_balanced_loss(z, y, counts, reduction="none", validate_args=False)) * w[y]


def _logit_adjusted(
    z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, *, counts: torch.Tensor
) -> torch.Tensor:
    from weightlab.functional import logit_adjusted_loss

    return _values(
        logit_adjusted_loss(
            z, y, counts=counts, class_weight=w, reduction="none", validate_args=False
        )
    )


def _balanced_softmax(
    z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, *, counts: torch.Tensor
) -> torch.Tensor:
    from weightlab.functional import balanced_softmax_loss

    return _values(
        balanced_softmax_loss(z, y, counts, class_weight=w, reduction="none", validate_args=False)
    )


def _ldam(
    z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, *, counts: torch.Tensor
) -> torch.Tensor:
    from weightlab.functional import ldam_loss

    return _values(
        ldam_loss(z, y, counts, class_weight=w, reduction="none", validate_args=False)
    )


_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "focal": _focal,
    "class_balanced": _class_balanced,
    "logit_adjusted": _logit_adjusted,
    "balanced_softmax": _balanced_softmax,
    "ldam": _ldam,
}
