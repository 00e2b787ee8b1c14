"""A study's grid and training settings: :class:`StudySpec`, its presets and its stacks.

A :class:`StudySpec` names the grid (data x architectures x optimizers x
weightings x strengths x seeds, plus training settings); :meth:`StudySpec.trials`
expands it into :class:`~weightlab.lab.trial.TrialConfig` objects and
:meth:`StudySpec.stacks` hands them out stack by stack (trials sharing a
:attr:`~weightlab.lab.trial.TrialConfig.stack_key` train as one vectorized
model). Architecture names come from
:data:`weightlab.lab.architectures.ARCHITECTURES`, optimizers from
:data:`weightlab.lab.optim.OPTIMIZERS`, weightings from
:func:`weightlab.lab.weightings.weighting_names`.

Weightings: ``"none"`` (every class weight 1), any scheme of
:data:`weightlab.weights.SCHEMES` (``"balanced"``, ``"inverse"``, ...), a loss
of the registry, and ``"power"``, which is swept over ``strengths``: weight of
class ``c`` is proportional to :math:`n_c^{-alpha}` (``alpha=0`` is
unweighted, ``alpha=1`` is inverse frequency).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from weightlab.errors import InvalidValueError, expected, names
from weightlab.lab.architectures import ARCHITECTURES
from weightlab.lab.metrics import METRIC_NAMES
from weightlab.lab.optim import OPTIMIZERS
from weightlab.lab.trial import TrialConfig
from weightlab.lab.weightings import weighting_model_params, weighting_names

__all__ = ["PRESETS", "StudySpec", "group_stacks"]


@dataclass(frozen=True)
class StudySpec:
    """The grid of a study and its training settings.

    Attributes:
        data: data set name (``"digits-lt"``, ``"synthetic"``) or file path.
        data_params: options of the data loader (``imbalance_ratio``, ...).
        archs: architectures (``"mlp"``, ``"cnn"``, ``"gru"``, ``"lstm"``).
        optimizers: optimizers (``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``).
        weightings: ``"none"``, ``"power"``, weight scheme names or literature
            losses (:func:`weightlab.lab.weightings.weighting_names`).
        strengths: the ``alpha`` values ``"power"`` is swept over.
        seeds: seeds; every configuration is trained once per seed.
        epochs: training epochs of every trial.
        batch_size: mini-batch size.
        lr: learning rate (``None``: the lab's default for the optimizer).
        lrs: per optimizer (those not studied are ignored), a grid of learning
            rates every trial of its cells is trained at (one stack holds them
            all: the engine gives each slice its own rate); the summary compares
            each weighting at the rate chosen on validation. An optimizer without
            a grid trains at ``lr``.
        patience: early stopping of every trial after this many epochs without a
            better validation score; ``epochs`` is then the maximum.
        model_params: per architecture, its size options (``{"mlp": {"hidden": 64}}``).
        metric: the metric the summary ranks by (one of
            :data:`weightlab.lab.metrics.METRIC_NAMES`).
    """

    data: str = "digits-lt"
    data_params: dict[str, Any] = field(default_factory=dict)
    archs: tuple[str, ...] = ("mlp", "cnn", "gru")
    optimizers: tuple[str, ...] = ("sgd", "adam", "rmsprop")
    # power(a=1) equals "balanced" and power(a=0) equals "none" once normalised to
    # mean 1, so the defaults sweep alpha > 0 and add losses instead of duplicates.
    weightings: tuple[str, ...] = ("none", "power", "focal", "logit_adjusted", "ldam")
    strengths: tuple[float, ...] = (0.25, 0.5, 1.0)
    seeds: tuple[int, ...] = (0, 1)
    epochs: int = 8
    batch_size: int = 64
    lr: float | None = None
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric: str = "balanced_accuracy"
    lrs: dict[str, tuple[float, ...]] = field(default_factory=dict)
    patience: int | None = None

    def __post_init__(self) -> None:
        # Accept lists (from TOML or the CLI) and normalise them to tuples.
        for name in ("archs", "optimizers", "weightings", "strengths", "seeds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "strengths", tuple(float(a) for a in self.strengths))
        if isinstance(self.lrs, dict):
            object.__setattr__(self, "lrs", {k: tuple(float(x) for x in v) if isinstance(
                v, (list, tuple)) else v for k, v in self.lrs.items()})  # fmt: skip
        self.validate()

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> StudySpec:
        """Return the preset ``name`` (``"quick"`` or ``"full"``) with ``overrides`` applied.

        Raises:
            InvalidValueError: unknown preset name or a bad override.

        Example:
            >>> StudySpec.preset("quick").num_trials
            252
        """
        if name not in PRESETS:
            raise InvalidValueError(
                expected("preset", f"to be one of {names(PRESETS)}", repr(name), "Pick one.")
            )
        return replace(PRESETS[name], **overrides) if overrides else PRESETS[name]

    @classmethod
    def from_toml(
        cls, path: str | Path, *, preset: str | None = None, **overrides: Any
    ) -> StudySpec:
        """Load a study file (see ``examples/study.toml``); ``overrides`` win over it.

        The file's top-level keys are the fields of :class:`StudySpec`, plus an
        optional ``preset`` the file starts from (default ``"quick"``; the
        ``preset`` argument, when given, replaces it); ``[data_params]`` and
        ``[model_params.<arch>]`` are tables.

        Raises:
            InvalidValueError: a missing or malformed file, or an unknown key.
        """
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidValueError(
                expected("config", "to be an existing TOML study file", f"'{p}' (no such file)",
                         "Check the path; examples/study.toml is a template.")
            ) from None
        except tomllib.TOMLDecodeError as err:
            raise InvalidValueError(
                expected("config", "to be valid TOML", f"'{p}' ({err})", "Fix the file's syntax.")
            ) from None
        base = raw.pop("preset", "quick")
        base = preset if preset is not None else base
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidValueError(
                expected(
                    "config",
                    f"to have only the keys 'preset', {names(sorted(known))}",
                    f"{names(unknown)} in '{p}'",
                    "Remove or rename them.",
                )
            )
        return cls.preset(base, **{**raw, **overrides})

    def validate(self) -> None:
        """Check every field; called on construction.

        Raises:
            InvalidValueError: naming the field, what it accepts and the fix.
        """
        archs = ARCHITECTURES.names()
        _check_names("archs", self.archs, archs)
        _check_names("optimizers", self.optimizers, OPTIMIZERS)
        _check_names("weightings", self.weightings, weighting_names())
        for name in ("archs", "optimizers", "weightings", "seeds", "strengths"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise InvalidValueError(
                    expected(name, "to hold each value once", repr(list(values)),
                             "Remove the duplicates.")
                )
        if "power" in self.weightings and not self.strengths:
            raise InvalidValueError(
                expected("strengths", "to hold at least one alpha when 'power' is a weighting",
                         "[]", "Pass e.g. strengths 0,0.5,1, or drop 'power'.")
            )
        for a in self.strengths:
            if not math.isfinite(a) or a < 0:
                raise InvalidValueError(
                    expected("strengths", "to be finite numbers >= 0", repr(a),
                             "Use alphas like 0, 0.5, 1 (weights ~ n_c^-alpha).")
                )
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise InvalidValueError(
                    expected("seeds", "to be integers >= 0", repr(s), "Use seeds like 0,1,2.")
                )
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidValueError(
                    expected(name, "to be an integer >= 1", repr(v), f"Pass e.g. {name}=8.")
                )
        if self.lr is not None and (not math.isfinite(self.lr) or self.lr <= 0):
            raise InvalidValueError(
                expected("lr", "to be a positive number or None", repr(self.lr),
                         "Leave it unset for the optimizer's lab default.")
            )
        if not isinstance(self.lrs, dict) or any(
            o not in OPTIMIZERS or not isinstance(g, tuple) or not g
            or any(not math.isfinite(x) or x <= 0 for x in g) for o, g in self.lrs.items()
        ):  # fmt: skip
            raise InvalidValueError(
                expected("lrs", f"to map optimizers ({names(OPTIMIZERS)}) to non-empty lists of "
                         "positive learning rates", repr(self.lrs),
                         "Use e.g. {'sgd': [0.01, 0.05]} (optimizers not studied are ignored).")
            )  # fmt: skip
        if self.patience is not None and (
            isinstance(self.patience, bool) or not isinstance(self.patience, int)
            or self.patience < 1
        ):  # fmt: skip
            raise InvalidValueError(
                expected("patience", "to be None or an integer >= 1", repr(self.patience),
                         "Use e.g. patience=5 (epochs without a better validation score).")
            )  # fmt: skip
        if self.metric not in METRIC_NAMES:
            raise InvalidValueError(
                expected("metric", f"to be one of {names(METRIC_NAMES)}", repr(self.metric),
                         "Pick one of those.")
            )
        if not isinstance(self.model_params, dict) or any(
            a not in archs or not isinstance(p, dict) for a, p in self.model_params.items()
        ):
            raise InvalidValueError(
                expected("model_params", f"to map architectures ({names(archs)}) to option "
                         "tables", repr(self.model_params), "Use {'mlp': {'hidden': 64}}.")
            )
        for name in ("archs", "optimizers", "weightings", "seeds"):
            if not getattr(self, name):
                raise InvalidValueError(
                    expected(name, "to hold at least one value", "[]", "Pass one or more.")
                )

    def trials(self) -> list[TrialConfig]:
        """Expand the grid: one config per arch x optimizer x weighting (x strength) x seed.

        Example:
            >>> spec = StudySpec(archs=["mlp"], optimizers=["sgd"], weightings=["none", "power"],
            ...                  strengths=[0.5, 1.0], seeds=[0])
            >>> [(c.weighting, c.alpha) for c in spec.trials()]
            [('none', None), ('power', 0.5), ('power', 1.0)]
        """
        return [c for arch in self.archs for opt in self.optimizers for c in self._cell(arch, opt)]

    def stacks(self) -> Iterator[list[TrialConfig]]:
        """The grid's stacks, one (arch, optimizer) cell at a time, lazily.

        The order is :func:`group_stacks` of :meth:`trials` (a stack never spans
        two cells), but a cell is expanded only when its first stack is asked for.

        Example:
            >>> spec = StudySpec(archs=["mlp"], optimizers=["sgd", "adam"],
            ...                  weightings=["none", "ldam"], seeds=[0, 1])
            >>> [(s[0].optimizer, len(s)) for s in spec.stacks()]
            [('sgd', 2), ('sgd', 2), ('adam', 2), ('adam', 2)]
        """
        for arch in self.archs:
            for opt in self.optimizers:
                yield from group_stacks(self._cell(arch, opt))

    def _cell(self, arch: str, opt: str) -> list[TrialConfig]:
        """The configs of one (arch, optimizer) cell, in grid order."""
        data_params = tuple(sorted(self.data_params.items()))
        out = []
        for w in self.weightings:
            # the weighting's model options (ldam: the cosine head), then the user's
            options = weighting_model_params(w) | self.model_params.get(arch, {})
            model_params = tuple(sorted(options.items()))
            alphas: Iterable[float | None] = self.strengths if w == "power" else [None]
            for alpha in alphas:
                for lr in self.lrs.get(opt, (self.lr,)):
                    for seed in self.seeds:
                        out.append(
                            TrialConfig(
                                data=self.data,
                                arch=arch,
                                optimizer=opt,
                                weighting=w,
                                alpha=alpha,
                                seed=seed,
                                lr=lr,
                                epochs=self.epochs,
                                batch_size=self.batch_size,
                                data_params=data_params,
                                model_params=model_params,
                                patience=self.patience,
                            )
                        )
        return out

    @property
    def num_trials(self) -> int:
        """How many trials the grid holds."""
        per_seed = sum(len(self.strengths) if w == "power" else 1 for w in self.weightings)
        rates = sum(len(self.lrs.get(o, (self.lr,))) for o in self.optimizers)
        return len(self.archs) * rates * per_seed * len(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of the spec (lists for tuples)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


def _check_names(arg: str, values: Sequence[str], valid: Sequence[str]) -> None:
    for v in values:
        if v not in valid:
            raise InvalidValueError(
                expected(arg, f"to be among {names(valid)}", repr(v), "Pick from those names.")
            )


#: The built-in studies. ``quick`` is the default (252 trials; see README for its time).
PRESETS: dict[str, StudySpec] = {}
PRESETS_RAW: dict[str, dict[str, Any]] = {
    # The GRU at hidden 32 trains 3x faster than at its default 64 on 2 CPU cores. Every
    # optimizer at two learning rates (each weighting compared at its better one), up to 40
    # epochs with early stopping: at 8 fixed epochs and the default rates the unweighted GRU
    # was near chance (balanced accuracy 0.22-0.25); at these rates it converges to ~0.8-0.9
    # (the runs are in docs/lab.md).
    "quick": {
        "model_params": {"gru": {"hidden": 32}},
        "epochs": 40,
        "patience": 8,
        "lrs": {"sgd": (0.05, 0.1), "adam": (3e-3, 1e-2), "rmsprop": (1e-3, 3e-3)},
    },
    "full": {
        "data_params": {"imbalance_ratio": 50.0},
        "archs": ("mlp", "cnn", "gru", "lstm"),
        "optimizers": ("sgd", "adam", "adamw", "rmsprop"),
        "weightings": (
            "none",
            "power",
            "effective_number",
            "focal",
            "class_balanced",
            "logit_adjusted",
            "ldam",
        ),
        "strengths": (0.25, 0.5, 0.75, 1.0, 1.5),
        "seeds": (0, 1, 2, 3, 4),
        "epochs": 60,
        "patience": 10,
        "lrs": {"sgd": (0.02, 0.05, 0.1), "adam": (1e-3, 3e-3, 1e-2),
                "adamw": (1e-3, 3e-3, 1e-2), "rmsprop": (3e-4, 1e-3, 3e-3)},
    },
}


def _presets() -> dict[str, StudySpec]:
    if not PRESETS:
        for name, kw in PRESETS_RAW.items():
            PRESETS[name] = StudySpec(**kw)
    return PRESETS


def group_stacks(configs: Iterable[TrialConfig]) -> list[list[TrialConfig]]:
    """Group configs by :attr:`TrialConfig.stack_key`, keeping first-seen order."""
    stacks: dict[str, list[TrialConfig]] = {}
    for c in configs:
        stacks.setdefault(c.stack_key, []).append(c)
    return list(stacks.values())



_presets()
