"""What one trial is (its configuration) and what it produced (its result).

A trial is one model trained once: data x architecture x optimizer x weighting
x strength x seed (+ training settings). Trials whose configurations agree on
everything but ``weighting``, ``alpha`` and ``seed`` share a *stack*: the
vectorized engine trains them together as one batched model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

__all__ = ["TrialConfig", "TrialResult", "TrialStatus"]

#: ``"pruned"``: a tuner stopped it early (its curves are kept, it has no final metrics).
TrialStatus = Literal["done", "failed", "pruned"]

#: Fields that may differ between the trials of one vectorized stack (the engine gives
#: every slice its own learning rate and weight decay, see :mod:`weightlab.lab.engine`).
PER_SLICE_FIELDS = ("weighting", "alpha", "seed", "params", "lr", "weight_decay")
#: Fields left out of :meth:`TrialConfig.to_dict` (and so of the trial id) while at their
#: default, so adding them kept the ids of every earlier study.
_OMITTED_AT_DEFAULT = {"params": (), "weight_decay": None, "patience": None}


@dataclass(frozen=True)
class TrialConfig:
    """Everything that determines a trial's outcome; its hash is the trial id.

    Attributes:
        data: data set name (``"digits-lt"``, ``"synthetic"``) or a file path.
        arch: ``"mlp"``, ``"cnn"``, ``"gru"`` or ``"lstm"``.
        optimizer: ``"sgd"``, ``"adam"``, ``"adamw"`` or ``"rmsprop"``.
        weighting: a registered weight scheme (``"balanced"``, ...), ``"power"``
            for the strength sweep, ``"none"``, or a registered loss name.
        alpha: strength of the ``"power"`` weighting (weights ~ n_c^-alpha); ``None`` otherwise.
        seed: initialisation and data-order seed of this trial.
        lr: learning rate (``None``: the optimizer's default in the lab).
        epochs: training epochs.
        batch_size: mini-batch size.
        data_params: data-set options (imbalance ratio, data seed, ...), as sorted items.
        model_params: architecture options (hidden size, ...), as sorted items.
        params: the weighting's own parameters, as sorted items: a scheme's
            (``beta`` of ``effective_number``), a loss's (``gamma`` of
            ``focal``), ``class_weights`` (a scheme a loss is weighted with) and
            ``drw_epoch`` (deferred re-weighting); empty: the defaults.
        weight_decay: decoupled weight decay (``None``: the optimizer's own).
        patience: early stopping: stop after this many epochs without a better
            validation score, ``epochs`` being the maximum (``None``: train every epoch).
    """

    data: str
    arch: str
    optimizer: str
    weighting: str
    alpha: float | None
    seed: int
    lr: float | None = None
    epochs: int = 30
    batch_size: int = 64
    data_params: tuple[tuple[str, Any], ...] = ()
    model_params: tuple[tuple[str, Any], ...] = ()
    params: tuple[tuple[str, Any], ...] = ()
    weight_decay: float | None = None
    patience: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict; ``params``, ``weight_decay``, ``patience`` only when set."""
        d = asdict(self)
        d["data_params"] = dict(self.data_params)
        d["model_params"] = dict(self.model_params)
        d["params"] = dict(self.params)
        for name, default in _OMITTED_AT_DEFAULT.items():
            if getattr(self, name) == default:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialConfig:
        """Inverse of :meth:`to_dict`."""
        kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        kw["data_params"] = tuple(sorted(dict(d.get("data_params", {})).items()))
        kw["model_params"] = tuple(sorted(dict(d.get("model_params", {})).items()))
        kw["params"] = tuple(sorted(dict(d.get("params", {})).items()))
        return cls(**kw)

    @property
    def trial_id(self) -> str:
        """A stable id: the first 16 hex digits of the SHA-256 of the canonical JSON."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def stack_key(self) -> str:
        """Trials with the same stack key can train as one vectorized model."""
        d = self.to_dict()
        for name in PER_SLICE_FIELDS:
            d.pop(name, None)
        return json.dumps(d, sort_keys=True, separators=(",", ":"))


@dataclass
class TrialResult:
    """What a finished (or failed) trial produced; stored whole or not at all.

    Attributes:
        config: the trial's configuration.
        status: ``"done"``, ``"failed"`` or ``"pruned"``.
        reason: why it failed or was pruned (``"non-finite loss at epoch 3"``), empty when done.
        train_loss: mean training loss per epoch.
        val_metric: validation metric per epoch (the study's chosen metric).
        metrics: final test metrics (name -> value).
        per_class: per-class test metrics (name -> list over classes).
        test_logits: logits on the test split (rows, classes), for calibration
            and post-hoc logit adjustment in the report.
        timings: seconds spent (``"train"``, ``"eval"``, ...).
        extra: anything else worth keeping (gradient diagnostics, ...).
    """

    config: TrialConfig
    status: TrialStatus
    reason: str = ""
    train_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, list[float]] = field(default_factory=dict)
    test_logits: list[list[float]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
