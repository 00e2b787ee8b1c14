"""The lab's gradient diagnostics: :mod:`weightlab.diagnostics` applied to stacks and trials.

The maths (each class's share of each layer's gradient and of its update,
loss mass) lives in :mod:`weightlab.diagnostics`, which knows nothing of the
lab. This module feeds it the lab's models, data and optimizers: every slice
of a trained stack (:func:`diagnose_stack`, for the engine), a plain model
during :func:`~weightlab.lab.engine.train_single` (:func:`single_diagnostics`),
and a trial's model at initialisation with the trial's own weighting and
optimizer (:func:`diagnostics_for_trial`, for the report when a study stored
none).

**A stack's optimizer state, slice by slice.** One optimizer steps a whole
stack; its state tensors (momentum, Adam's moments, RMSprop's running square)
have each stacked parameter's shape, slice axis first, and every update rule
is element-wise (:mod:`weightlab.lab.optim`). So slice ``k``'s state is
exported exactly as its parameters are: each state tensor is put into a copy
of the stack in its parameter's place and that copy is exported with
``StackedModel.export(k, ...)``, which transposes and reshapes it as it does
the parameter. The slice's plain model then gets a plain optimizer of the
same class and hyperparameters holding that state, and
:func:`~weightlab.diagnostics.record_diagnostics` reads it as for any model.
This needs the stack's parameters to be the optimizer's own: when the engine
reassembles the reported slices into new parameters after training (a slice
diverged, stopped early or was pruned), the state no longer lines up with
them and the update shares are recorded as missing, with the reason.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from weightlab.diagnostics import PROBE_SIZE, PartsLoss, probe_batch, record_diagnostics
from weightlab.errors import InvalidValueError, expected
from weightlab.lab.architectures import ARCHITECTURES, build_model
from weightlab.lab.data import LabData, load_data
from weightlab.lab.optim import OPTIMIZERS, default_lr, make_optimizer
from weightlab.lab.trial import TrialConfig
from weightlab.lab.weightings import resolve_weighting

__all__ = ["diagnose_stack", "diagnostics_for_trial", "single_diagnostics"]


class Snapshot(Protocol):
    """A plain model's diagnostics now: :func:`single_diagnostics` returns one."""

    def __call__(self, *, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
        """The diagnostics dict; with ``optimizer``, its update shares too."""


def diagnose_stack(
    stacked: nn.Module,
    arch: str,
    data: LabData,
    class_weights: torch.Tensor | Sequence[npt.ArrayLike],
    loss_fn: PartsLoss | Sequence[PartsLoss | None] | None = None,
    model_params: dict[str, Any] | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
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
        optimizer: the optimizer that steps ``stacked``: each slice's part of
            its state (exported as the module docstring says) gives the slice's
            ``"update_shares"``. Where that state cannot be lined up with the
            slices, ``"update_shares"`` holds ``"share": None`` and a
            ``"missing"`` reason; gradient shares are recorded either way.

    Example:
        >>> from weightlab.lab.architectures import build_stacked
        >>> from weightlab.lab.data import load_data
        >>> data = load_data("synthetic", n_classes=3, n_features=6, head=30).inputs("mlp")
        >>> stack = build_stacked("mlp", (6,), 3, [0, 1], hidden=8)
        >>> opt = torch.optim.Adam(stack.parameters())
        >>> ds = diagnose_stack(stack, "mlp", data, [[1.0] * 3] * 2, model_params={"hidden": 8},
        ...                     optimizer=opt)
        >>> [d["update_shares"]["preconditioner"] for d in ds]
        ['first step', 'first step']
    """
    px, py = probe_batch(data.x_train, data.y_train)
    shape = data.arch_shape(arch)

    def build() -> nn.Module:
        return build_model(arch, shape, data.num_classes, seed=0, **(model_params or {}))

    states: list[list[dict[str, Any]]] | None = None
    missing = ""
    if optimizer is not None:
        states, missing = _slice_states(stacked, optimizer, build)
    out: list[dict[str, Any] | None] = []
    for k in range(int(stacked.k)):  # type: ignore[arg-type]
        try:
            plain = build()
            stacked.export(k, plain)  # type: ignore[operator]
            if not all(bool(torch.isfinite(p).all()) for p in plain.parameters()):
                out.append(None)
                continue
            w = np.asarray(torch.as_tensor(class_weights[k]).detach().cpu(), dtype=np.float64)
            fn = loss_fn[k] if isinstance(loss_fn, Sequence) else loss_fn
            opt = None
            if optimizer is not None and states is not None:
                opt = _plain_optimizer(optimizer, plain, states[k])
            d = record_diagnostics(plain, fn, px, py, w, optimizer=opt)
            if optimizer is not None and opt is None:
                d["update_shares"] = _missing(optimizer, missing)
            out.append(d)
        except (RuntimeError, ValueError):
            out.append(None)
    return out


def _missing(optimizer: torch.optim.Optimizer, why: str) -> dict[str, Any]:
    """The ``"update_shares"`` entry of a slice whose optimizer state could not be used."""
    return {"share": None, "optimizer": type(optimizer).__name__, "rule": None,
            "preconditioner": None, "step": None, "missing": why}  # fmt: skip


def _slice_states(
    stacked: nn.Module, optimizer: torch.optim.Optimizer, build: Callable[[], nn.Module]
) -> tuple[list[list[dict[str, Any]]] | None, str]:
    """Per slice, the optimizer state of each parameter of its plain model (in order), or why not.

    Each state tensor of a stacked parameter's shape is exported through a
    copy of the stack (module docstring); scalar state (Adam's ``step``) is
    the same for every parameter that has stepped, as the stack steps them
    together, and is copied. A parameter the optimizer has never stepped gets
    no state, found by exporting an indicator the same way.
    """
    params = list(stacked.parameters())
    owned = {id(p) for g in optimizer.param_groups for p in g["params"]}
    if not all(id(p) in owned for p in params):
        return None, (
            "the stack's parameters are not the optimizer's (the engine reassembled the "
            "reported slices after training), so its state does not line up with them"
        )
    hypers = [{key: v for key, v in g.items() if key != "params"} for g in optimizer.param_groups]
    if any(h != hypers[0] for h in hypers):
        return None, "the optimizer's parameter groups differ, so a slice's groups are unknown"
    raw = [optimizer.state.get(p, {}) for p in params]
    keys = sorted({key for p, st in zip(params, raw, strict=True) for key, v in st.items()
                   if torch.is_tensor(v) and v.shape == p.shape})  # fmt: skip
    scalars: dict[str, Any] = {}
    for p, st in zip(params, raw, strict=True):
        for key, v in st.items():
            if torch.is_tensor(v) and v.shape == p.shape:
                continue
            value = float(v) if torch.is_tensor(v) else v
            if scalars.setdefault(key, value) != value:
                return None, f"the stack's parameters have different {key!r} in their state"
    k = int(stacked.k)  # type: ignore[arg-type]
    twin = copy.deepcopy(stacked)
    n = len(list(build().parameters()))
    exported: dict[str, list[list[torch.Tensor]]] = {}
    for key in [*keys, ""]:  # "": the indicator of a parameter that has a state
        with torch.no_grad():
            for q, st in zip(twin.parameters(), raw, strict=True):
                fill = float(bool(st)) if key == "" else 0.0  # no such state: zeros
                q.copy_(st[key] if key in st else q.new_full(q.shape, fill))
        exported[key] = []
        for i in range(k):
            holder = build()
            twin.export(i, holder)  # type: ignore[operator]
            exported[key].append([q.detach().clone() for q in holder.parameters()])
    out: list[list[dict[str, Any]]] = []
    for i in range(k):
        per: list[dict[str, Any]] = []
        for j in range(n):
            if not bool((exported[""][i][j] == 1.0).all()):
                per.append({})
                continue
            state: dict[str, Any] = {key: exported[key][i][j] for key in keys}
            state.update({key: torch.tensor(v) if isinstance(v, float) else v
                          for key, v in scalars.items()})  # fmt: skip
            per.append(state)
        out.append(per)
    return out, ""


def _plain_optimizer(
    optimizer: torch.optim.Optimizer, plain: nn.Module, states: Sequence[dict[str, Any]]
) -> torch.optim.Optimizer:
    """An optimizer of ``optimizer``'s class and settings over ``plain``, holding ``states``."""
    group = {key: v for key, v in optimizer.param_groups[0].items() if key != "params"}
    params = list(plain.parameters())
    opt: torch.optim.Optimizer = type(optimizer)([{**group, "params": params}])  # type: ignore[call-arg]
    for p, st in zip(params, states, strict=True):
        if st:
            opt.state[p] = dict(st)
    return opt


def single_diagnostics(
    model: nn.Module,
    data: LabData,
    class_weight: torch.Tensor,
    loss_fn: PartsLoss,
    *,
    optimizer: torch.optim.Optimizer | None = None,
) -> Snapshot:
    """A snapshot function: a plain model's gradient diagnostics at its current state.

    The snapshot takes an ``optimizer`` (the one training ``model``, default
    the one given here): its state gives the ``"update_shares"`` of
    :func:`~weightlab.diagnostics.record_diagnostics`. The engine builds its
    optimizer after the first snapshot, so it passes it to the final one.

    Example:
        >>> from weightlab.lab.data import load_data
        >>> data = load_data("synthetic", n_classes=3, n_features=6, head=30).inputs("mlp")
        >>> model = build_model("mlp", (6,), 3, seed=0, hidden=8)
        >>> from weightlab.diagnostics import weighted_cross_entropy_parts as ce
        >>> snap = single_diagnostics(model, data, torch.ones(3), ce)
        >>> "update_shares" in snap(), snap(optimizer=torch.optim.SGD(model.parameters()))[
        ...     "update_shares"]["rule"]
        (False, 'sgd')
    """
    px, py = probe_batch(data.x_train, data.y_train)
    default = optimizer

    def snapshot(*, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
        opt = optimizer if optimizer is not None else default
        return record_diagnostics(model, loss_fn, px, py, class_weight, optimizer=opt)

    return snapshot


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
    Its update shares are those of the trial's optimizer before its first
    step (a fresh ``make_optimizer``: SGD's identity, Adam's and RMSprop's
    first-step preconditioner from the probe's gradient).

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
    opt = None
    if config.optimizer in OPTIMIZERS:
        lr = default_lr(config.optimizer) if config.lr is None else config.lr
        opt = make_optimizer(config.optimizer, model.parameters(), lr=lr)
    return record_diagnostics(model, weighting.loss, px, py, weighting.class_weight, optimizer=opt)
