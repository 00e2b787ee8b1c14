r"""The search space over weightings, built from the registries' metadata.

A point of the space is one lab weighting with its parameters: the family
(``"none"``, ``"power"`` with its ``alpha``, a weight scheme with its own
parameters such as the effective-number ``beta``, or a literature loss with
its parameters), the strength of the class weights of a loss that takes them
(``alpha``, :math:`w_c \propto n_c^{-\alpha}`, 0: without), the
deferred re-weighting start of a loss paired with DRW (LDAM), and optionally
the learning rate and weight decay. Every parameter and range comes from
``SCHEMES.params(name)``, ``LOSSES.params(name)`` and
``LossInfo.deferred_reweighting``; a :class:`SearchSpace` only narrows them.

Default families: ``"none"``, ``"power"``, every scheme with parameters of its
own, and every lab loss. Parameterless schemes are left out when their
weights, normalised to mean 1, are a power of the counts (``balanced`` and
``inverse`` are ``power(alpha=1)``, ``sqrt_inverse`` is ``power(alpha=0.5)``,
``uniform`` is ``none``): ``power`` already covers them.

Example:
    >>> space = SearchSpace()
    >>> space.families[:3]
    ('none', 'power', 'effective_number')
    >>> space.param_ranges("focal")["gamma"].high
    5.0
    >>> SearchSpace(families=("focal",), ranges={"focal.gamma": (0.5, 2.0)}).param_ranges(
    ...     "focal")["gamma"].low
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from weightlab.errors import InvalidValueError, expected, names
from weightlab.lab.trial import TrialConfig
from weightlab.lab.weightings import LOSS_WEIGHTINGS, weighting_model_params, weighting_names
from weightlab.losses import LOSSES
from weightlab.registry import TunableParam
from weightlab.weights import SCHEMES, class_weights

__all__ = ["Point", "SearchSpace", "default_families"]

#: The counts the alias check of parameterless schemes compares weights on.
_PROBE_COUNTS = np.array([1000.0, 300.0, 100.0, 30.0, 10.0, 3.0])


def _is_power_alias(scheme: str) -> bool:
    """Whether a parameterless scheme's mean-1 weights are ``power(alpha)`` for 0, 0.5 or 1."""
    w = class_weights(_PROBE_COUNTS, scheme)
    return any(
        np.allclose(w, class_weights(_PROBE_COUNTS, "power", alpha=a), rtol=1e-6)
        for a in (0.0, 0.5, 1.0)
    )


def default_families() -> tuple[str, ...]:
    """``none``, ``power``, the schemes with parameters or unlike a power, and every lab loss.

    Example:
        >>> "balanced" in default_families(), "ldam" in default_families()
        (False, True)
    """
    out = ["none", "power"]
    for name in SCHEMES.names():
        if name in ("none", "power") or name in out:
            continue
        if SCHEMES.params(name) or not _is_power_alias(name):
            out.append(name)
    return (*out, *LOSS_WEIGHTINGS)


def _takes_class_weights(family: str) -> bool:
    return family in LOSS_WEIGHTINGS and LOSSES.info(family).class_weight is not None


@dataclass(frozen=True)
class Point:
    """One configuration the tuner proposes: the weighting and the training settings it varies."""

    weighting: str
    alpha: float | None
    params: tuple[tuple[str, Any], ...]
    lr: float | None
    weight_decay: float | None

    def apply(self, base: TrialConfig) -> TrialConfig:
        """``base`` (data, arch, optimizer, epochs, seed, ...) with this point's settings.

        The weighting's model options (LDAM's cosine head) are merged under the
        base's, where the architecture has them (a user's model takes none: LDAM
        then trains on its own logits, its scale ``s`` searched).
        """
        from weightlab.lab.architectures import ARCHITECTURES

        takes = ARCHITECTURES.get(base.arch).defaults if base.arch in ARCHITECTURES else {}
        asked = {k: v for k, v in weighting_model_params(self.weighting).items() if k in takes}
        mp = asked | dict(base.model_params)
        return TrialConfig(
            data=base.data,
            arch=base.arch,
            optimizer=base.optimizer,
            weighting=self.weighting,
            alpha=self.alpha,
            seed=base.seed,
            lr=self.lr if self.lr is not None else base.lr,
            epochs=base.epochs,
            batch_size=base.batch_size,
            data_params=base.data_params,
            model_params=tuple(sorted(mp.items())),
            params=self.params,
            weight_decay=self.weight_decay,
        )


def _range(name: str, value: Any, default: float, *, log: bool = False) -> tuple[float, float]:
    """A user's (low, high) pair, checked: finite numbers, low <= high, > 0 on a log scale."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidValueError(
            expected(
                name,
                "to be a (low, high) pair of numbers",
                repr(value),
                f"Pass e.g. {name}=({default / 10:g}, {default * 10:g}).",
            )
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high or (log and low <= 0):
        raise InvalidValueError(
            expected(
                name,
                "to be a non-empty range low <= high" + (" of positive numbers" if log else ""),
                f"({low:g}, {high:g})",
                "Give the smaller bound first.",
            )
        )
    return low, high


@dataclass(frozen=True)
class SearchSpace:
    """What the tuner searches: weighting families, narrowed ranges, and optional lr / decay.

    Attributes:
        families: the weightings to choose from (default :func:`default_families`).
        ranges: narrowed ranges by ``"family.param"`` (``"focal.gamma": (0.5, 3)``,
            ``"power.alpha"``, ``"ldam.drw_start"``, ``"focal.alpha"`` for a loss's
            class-weight power); a range with ``low == high`` fixes the parameter.
        lr: a log-scale range of learning rates to search, or ``None`` (the
            optimizer's default or the study's ``lr``).
        weight_decay: a log-scale range of decoupled weight decay, or ``None``.
        class_weighted_losses: search a class-weight power for the losses that take
            class weights (``False``: those losses train without class weights).

    Raises:
        InvalidValueError: an unknown family, an unknown ``family.param``, or an empty range.

    Example:
        >>> import optuna
        >>> space = SearchSpace(families=("focal",), ranges={"focal.gamma": (1.0, 3.0)},
        ...                     class_weighted_losses=False)
        >>> point = space.suggest(optuna.create_study().ask())
        >>> point.weighting, 1.0 <= dict(point.params)["gamma"] <= 3.0
        ('focal', True)
    """

    families: tuple[str, ...] = field(default_factory=default_families)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    lr: tuple[float, float] | None = None
    weight_decay: tuple[float, float] | None = None
    class_weighted_losses: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "families", tuple(self.families))
        if not self.families:
            raise InvalidValueError(
                expected(
                    "weightings",
                    "to name at least one weighting",
                    "none",
                    f"Pick from {names(weighting_names())}.",
                )
            )
        known = weighting_names()
        for fam in self.families:
            if fam not in known:
                raise InvalidValueError(
                    expected(
                        "weightings",
                        f"to be among {names(known)}",
                        repr(fam),
                        "Drop or fix it (see `weightlab tune --help`).",
                    )
                )
        checked: dict[str, tuple[float, float]] = {}
        for key, value in dict(self.ranges).items():
            fam, _, param = str(key).partition(".")
            own = self._registry_ranges(fam) if fam in known else {}
            if fam not in self.families or param not in own:
                valid = [f"{f}.{p}" for f in self.families for p in self._registry_ranges(f)]
                raise InvalidValueError(
                    expected(
                        "ranges",
                        f"to name a family.param of this space ({names(valid)})",
                        repr(key),
                        "Fix the name, or add the family to the weightings.",
                    )
                )
            tp = own[param]
            checked[key] = _range(key, value, tp.default, log=tp.log)
        object.__setattr__(self, "ranges", checked)
        if self.lr is not None:
            object.__setattr__(self, "lr", _range("lr", self.lr, 1e-3, log=True))
        if self.weight_decay is not None:
            wd = _range("weight_decay", self.weight_decay, 1e-4, log=True)
            object.__setattr__(self, "weight_decay", wd)

    def _registry_ranges(self, family: str) -> dict[str, TunableParam]:
        """The registry's tunable parameters of ``family``, before narrowing."""
        out: dict[str, TunableParam] = {}
        if family in LOSS_WEIGHTINGS:
            out.update(LOSSES.params(family))
            if _takes_class_weights(family) and self.class_weighted_losses:
                out["alpha"] = SCHEMES.params("power")["alpha"]
            drw = LOSSES.info(family).deferred_reweighting
            if drw is not None:
                out["drw_start"] = drw
        elif family in SCHEMES:
            out.update(SCHEMES.params(family))
        return out

    def param_ranges(self, family: str) -> dict[str, TunableParam]:
        """The parameters searched for ``family``, with the user's narrowing applied."""
        out = {}
        for name, tp in self._registry_ranges(family).items():
            key = f"{family}.{name}"
            if key in self.ranges:
                low, high = self.ranges[key]
                default = min(max(tp.default, low), high)
                tp = TunableParam(default, low, high, tp.log, tp.log_complement and high < 1)
            out[name] = tp
        return out

    def suggest(self, trial: Any, grid: int | None = None) -> Point:
        """Draw a :class:`Point` from an Optuna trial (define-by-run: a family's own parameters).

        ``grid``: draw each parameter from that many values (its low end, default
        and high end for 3) as a categorical choice, for Optuna's
        ``BruteForceSampler``, which walks the resulting tree of families and
        their parameters exhaustively (a product grid over every family's
        parameters would be astronomically large).
        """
        family = trial.suggest_categorical("weighting", list(self.families))
        alpha: float | None = None
        params: dict[str, Any] = {}
        for name, tp in self.param_ranges(family).items():
            value = _suggest(trial, f"{family}.{name}", tp, grid)
            if name == "alpha":
                alpha = value
            else:
                params[name] = value
        lr = wd = None
        if self.lr:
            mid = math.sqrt(self.lr[0] * self.lr[1])
            lr = _suggest(trial, "lr", TunableParam(mid, *self.lr, log=True), grid)
        if self.weight_decay:
            lo, hi = self.weight_decay
            wd = _suggest(
                trial, "weight_decay", TunableParam(math.sqrt(lo * hi), lo, hi, True), grid
            )
        return Point(family, alpha, tuple(sorted(params.items())), lr, wd)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for the store's metadata and the study's fingerprint)."""
        return {
            "families": list(self.families),
            "ranges": {k: list(v) for k, v in sorted(self.ranges.items())},
            "lr": list(self.lr) if self.lr else None,
            "weight_decay": list(self.weight_decay) if self.weight_decay else None,
            "class_weighted_losses": self.class_weighted_losses,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchSpace:
        """Inverse of :meth:`to_dict` (also reads a study file's ``[tune]`` table)."""
        unknown = sorted(
            set(d)
            - {"families", "weightings", "ranges", "lr", "weight_decay", "class_weighted_losses"}
        )
        if unknown:
            raise InvalidValueError(
                expected(
                    "space",
                    "to have keys weightings, ranges, lr, weight_decay, class_weighted_losses",
                    names(unknown),
                    "Drop or rename them.",
                )
            )
        kw: dict[str, Any] = {}
        fams = d.get("families", d.get("weightings"))
        if fams is not None:
            kw["families"] = tuple(fams)
        if d.get("ranges"):
            kw["ranges"] = {k: tuple(v) for k, v in dict(d["ranges"]).items()}
        for key in ("lr", "weight_decay"):
            if d.get(key) is not None:
                kw[key] = tuple(d[key])
        if "class_weighted_losses" in d:
            kw["class_weighted_losses"] = bool(d["class_weighted_losses"])
        return cls(**kw)


def _suggest(trial: Any, name: str, tp: TunableParam, grid: int | None = None) -> float:
    if tp.low == tp.high:
        return float(tp.low)
    if grid:
        return float(trial.suggest_categorical(name, _spread(tp, grid)))
    if tp.log_complement:  # 1 - x on a log scale: beta in [0.9, 0.99999]
        gap = trial.suggest_float(f"{name}:1-x", 1.0 - tp.high, 1.0 - tp.low, log=True)
        return float(1.0 - gap)
    return float(trial.suggest_float(name, tp.low, tp.high, log=tp.log))


def _spread(tp: TunableParam, points: int) -> list[float]:
    """``points`` values of a parameter: low, default, high for 3; evenly in its scale otherwise.

    Example:
        >>> _spread(TunableParam(2.0, 0.0, 5.0), 3)
        [0.0, 2.0, 5.0]
    """
    if points <= 1:
        return [tp.default]
    if points == 3:
        return sorted({tp.low, tp.default, tp.high})
    if tp.log_complement:
        gaps = np.geomspace(1.0 - tp.high, 1.0 - tp.low, points)
        return sorted(float(1.0 - g) for g in gaps)
    if tp.log:
        return [float(v) for v in np.geomspace(tp.low, tp.high, points)]
    return [float(v) for v in np.linspace(tp.low, tp.high, points)]
