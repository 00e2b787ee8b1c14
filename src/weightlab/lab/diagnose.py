"""The lab's gradient diagnostics: :mod:`weightlab.diagnostics` applied to stacks and trials.

The maths (each class's share of each layer's gradient, loss mass) lives in
:mod:`weightlab.diagnostics`, which knows nothing of the lab. This module
feeds it the lab's models and data: every slice of a trained stack
(:func:`diagnose_stack`, for the engine), a plain model during
:func:`~weightlab.lab.engine.train_single` (:func:`single_diagnostics`), and a
trial's model at initialisation with the trial's own weighting
(:func:`diagnostics_for_trial`, for the report when a study stored none).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from weightlab.diagnostics import PROBE_SIZE, PartsLoss, probe_batch, record_diagnostics
from weightlab.errors import InvalidValueError, expected
from weightlab.lab.architectures import ARCHITECTURES, build_model
from weightlab.lab.data import LabData, load_data
from weightlab.lab.trial import TrialConfig
from weightlab.lab.weightings import resolve_weighting

__all__ = ["diagnose_stack", "diagnostics_for_trial", "single_diagnostics"]


def diagnose_stack(
    stacked: nn.Module,
    arch: str,
    data: LabData,
    class_weights: torch.Tensor | Sequence[npt.ArrayLike],
    loss_fn: PartsLoss | Sequence[PartsLoss | None] | None = None,
    model_params: dict[str, Any] | None = None,
) -> list[dict[str, Any] | None]:
    """:func:`~weightlab.diagnostics.record_diagnostics` of every slice of a vectorized stack.

    Each slice is exported into a plain ``build_model`` twin
    (``StackedModel.export``) and probed on
    :func:`~weightlab.diagnostics.probe_batch` of the training rows. A slice
    whose diagnostics cannot be computed (non-finite parameters after
    divergence, ...) gets ``None``: diagnostics never fail a trial.

    Args:
        stacked: the engine's :class:`~weightlab.lab.stacked.StackedModel`.
        arch: the stack's architecture.
        data: the :class:`~weightlab.lab.data.LabData`, laid out for ``arch``.
        class_weights: ``(K, C)`` class weights, one row per slice.
        loss_fn: the slices' parts loss (default weighted cross-entropy), or one per slice.
        model_params: the stack's ``model_params``.
    """
    px, py = probe_batch(data.x_train, data.y_train)
    shape = data.arch_shape(arch)
    out: list[dict[str, Any] | None] = []
    for k in range(int(stacked.k)):  # type: ignore[arg-type]
        try:
            plain = build_model(arch, shape, data.num_classes, seed=0, **(model_params or {}))
            stacked.export(k, plain)  # type: ignore[operator]
            if not all(bool(torch.isfinite(p).all()) for p in plain.parameters()):
                out.append(None)
                continue
            w = np.asarray(torch.as_tensor(class_weights[k]).detach().cpu(), dtype=np.float64)
            fn = loss_fn[k] if isinstance(loss_fn, Sequence) else loss_fn
            out.append(record_diagnostics(plain, fn, px, py, w))
        except (RuntimeError, ValueError):
            out.append(None)
    return out


def single_diagnostics(
    model: nn.Module, data: LabData, class_weight: torch.Tensor, loss_fn: PartsLoss
) -> Callable[[], dict[str, Any]]:
    """A snapshot function: a plain model's gradient diagnostics at its current state."""
    px, py = probe_batch(data.x_train, data.y_train)
    return lambda: record_diagnostics(model, loss_fn, px, py, class_weight)


def diagnostics_for_trial(
    config: TrialConfig,
    data: LabData | None = None,
    *,
    probe_size: int = PROBE_SIZE,
) -> dict[str, Any]:
    """Diagnostics of a trial's model **at initialisation** (nothing is trained).

    Builds ``build_model(config.arch, ..., seed=config.seed)`` -- exactly the
    initial parameters the engine starts that trial from -- and calls
    :func:`~weightlab.diagnostics.record_diagnostics` on a probe batch of the
    training rows with the trial's resolved weighting
    (:func:`weightlab.lab.weightings.resolve_weighting`): its class weights
    *and its loss*, so a focal or LDAM trial is diagnosed with focal or LDAM.

    Args:
        config: the trial's configuration.
        data: its :class:`~weightlab.lab.data.LabData` (default: reloaded with
            ``load_data(config.data, **config.data_params)``).
        probe_size: probe rows at most.

    Raises:
        InvalidValueError: the config's architecture is not a lab architecture.
    """
    if config.arch not in ARCHITECTURES:
        raise InvalidValueError(
            expected("config.arch", f"to be a lab architecture {tuple(ARCHITECTURES)}",
                     repr(config.arch), "Diagnose a custom model with record_diagnostics.")
        )  # fmt: skip
    if data is None:
        data = load_data(config.data, **dict(config.data_params))
    weighting = resolve_weighting(config, data.train_counts)
    d = data.inputs(config.arch)
    model = build_model(
        config.arch, d.arch_shape(config.arch), d.num_classes, seed=config.seed,
        **dict(config.model_params),
    )  # fmt: skip
    px, py = probe_batch(d.x_train, d.y_train, probe_size)
    return record_diagnostics(model, weighting.loss, px, py, weighting.class_weight)
