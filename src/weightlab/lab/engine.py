r"""Training engines: K trials as one vectorized stack, or one trial at a time.

:func:`train_stack` trains the trials of one *stack* (configurations that
differ only in ``weighting``, ``alpha`` and ``seed``) as one
:class:`~weightlab.lab.stacked.StackedModel`. Each slice keeps everything a
trial trained alone would have:

* its **initialisation** -- ``build_model(..., seed=config.seed)``;
* its **data order** -- a fresh permutation of the training rows every epoch
  from a generator seeded with ``config.seed`` (:func:`epoch_orders`);
* its **loss weights** -- its own class-weight vector ``w`` (C,);
* its **optimizer state** -- element-wise rules (see :mod:`weightlab.lab.optim`).

The loss of slice ``k`` on a mini-batch is the weighted mean its loss's
:class:`~weightlab.functional.LossParts` give, :math:`L_k = S_k / D_k` (for
cross-entropy PyTorch's :math:`\sum_i w_{k,y_{ki}} \ell_{ki} / \sum_i w_{k, y_{ki}}`);
``loss_fn`` maps a batch to those parts (:data:`weightlab.lab.weightings.LabLoss`,
default :func:`~weightlab.lab.weightings.cross_entropy_parts`); the stack
minimises :math:`\sum_k L_k`, whose gradient in slice ``k``'s parameters is
the gradient of :math:`L_k` alone. :func:`train_single` is the plain loop
over one model (also any user ``nn.Module``) and gives the same numbers as
that trial's slice, to float tolerance.

**Curves and checkpoint.** Training runs a fixed number of epochs (no early
stopping). After every epoch the engines record the mean training loss (over
the epoch's rows) and the validation metric (``"balanced_accuracy"`` or
``"macro_f1"``). The reported test logits and metrics come from the
**best-validation epoch** (the earliest epoch with the highest value), the
usual model-selection rule; pass ``checkpoint="last"`` for the final epoch.

**Failures.** A slice whose mini-batch loss becomes NaN or infinite is
*failed* from that step on: its loss is masked out of the sum and its
gradients are zeroed, so the other slices train on unchanged; its result gets
``status="failed"`` and ``reason="non-finite loss at epoch E"`` with the curves
of the epochs it finished. The check costs no host synchronisation per step:
the engine keeps an on-device mask and reads it once at the end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from weightlab.errors import InvalidValueError, InvalidWeightError, ShapeMismatchError, expected
from weightlab.errors import names as _names
from weightlab.functional import LossParts
from weightlab.lab.allocator import retain_freed_memory
from weightlab.lab.architectures import ARCHITECTURES, build_model, build_stacked, check_arch
from weightlab.lab.data import LabData
from weightlab.lab.diagnose import diagnose_stack, single_diagnostics
from weightlab.lab.optim import make_optimizer
from weightlab.lab.trial import PER_SLICE_FIELDS, TrialConfig, TrialResult
from weightlab.lab.weightings import LabLoss, cross_entropy_parts

__all__ = [
    "VAL_METRICS",
    "LossFn",
    "ProgressFn",
    "epoch_orders",
    "stacked_logits",
    "stacked_val_metric",
    "train_single",
    "train_stack",
]

#: ``(logits (B, C), target (B,), class_weight (C,)) -> LossParts``: the batch's weighted
#: loss sum and the normaliser its mean divides by (:data:`weightlab.lab.weightings.LabLoss`).
LossFn = LabLoss
#: ``progress(epoch, epochs)``, called after each finished epoch (1-based).
ProgressFn = Callable[[int, int], None]
#: Validation metrics the engines can track per epoch.
VAL_METRICS = ("balanced_accuracy", "macro_f1")
Checkpoint = Literal["best", "last"]
#: Stacked rows (slices x examples) per evaluation block: K slices evaluate
#: ``EVAL_ROWS // K`` examples at a time, so a block's activations stay in the
#: cache (K = 32 GRU slices on the 500 test rows: 71 ms in one block, 43 ms in
#: blocks of 64). A single model (K = 1) evaluates up to 2048 rows in one block.
EVAL_ROWS = 2048


def epoch_orders(seed: int, epochs: int, n: int) -> torch.Tensor:
    """The data order of a trial: one permutation of ``range(n)`` per epoch, shape ``(epochs, n)``.

    It depends on ``seed`` alone (a private generator), so a slice of a stack
    and the same trial trained alone see the same mini-batches.

    Example:
        >>> torch.equal(epoch_orders(3, 2, 5), epoch_orders(3, 2, 5))
        True
        >>> sorted(epoch_orders(3, 2, 5)[1].tolist())
        [0, 1, 2, 3, 4]
    """
    g = torch.Generator().manual_seed(int(seed))
    return torch.stack([torch.randperm(n, generator=g) for _ in range(epochs)])


def stacked_val_metric(
    logits: torch.Tensor, target: torch.Tensor, metric: str = "balanced_accuracy"
) -> torch.Tensor:
    """A validation metric of each slice's logits ``(K, N, C)`` against ``target`` (N,), as (K,).

    ``"balanced_accuracy"``: mean recall over the classes present in
    ``target``. ``"macro_f1"``: mean F1 over the classes present in ``target``
    or predicted (F1 of a class never right is 0). Both agree with
    scikit-learn's ``balanced_accuracy_score`` and ``f1_score(average="macro")``.

    Example:
        >>> z = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
        >>> stacked_val_metric(z, torch.tensor([0, 1, 1])).tolist()
        [0.75]
    """
    k, _, c = logits.shape
    pred = logits.argmax(-1)
    flat = (torch.arange(k, device=pred.device).unsqueeze(1) * c + target) * c + pred
    conf = torch.bincount(flat.reshape(-1), minlength=k * c * c).view(k, c, c).double()
    tp = conf.diagonal(dim1=1, dim2=2)
    support = conf.sum(2)
    if metric == "balanced_accuracy":
        present = support > 0
        recall = torch.where(present, tp / support.clamp_min(1), 0.0)
        return (recall.sum(1) / present.sum(1)).float()
    predicted = conf.sum(1)
    denom = support + predicted
    used = denom > 0
    f1 = torch.where(used, 2 * tp / denom.clamp_min(1), 0.0)
    return (f1.sum(1) / used.sum(1)).float()


def _check_metric(val_metric: str, checkpoint: str) -> None:
    if val_metric not in VAL_METRICS:
        raise InvalidValueError(
            expected(
                "val_metric", f"to be one of {_names(VAL_METRICS)}", repr(val_metric), "Pick one."
            )
        )
    if checkpoint not in ("best", "last"):
        raise InvalidValueError(
            expected("checkpoint", "to be 'best' or 'last'", repr(checkpoint), "Pick one.")
        )


def _check_config(config: TrialConfig, n_train: int) -> None:
    for name in ("epochs", "batch_size"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidValueError(
                expected(name, "to be a positive integer", repr(value), f"Set {name}=1 or more.")
            )
    if n_train < 1:
        raise InvalidValueError(
            expected("data", "to have training rows", "none", "Check the data set.")
        )


def _weights(class_weights: Any, k: int, c: int) -> torch.Tensor:
    """Validate per-slice class weights into a float32 tensor (K, C)."""
    try:
        w = torch.as_tensor(np.asarray(class_weights, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise InvalidWeightError(
            expected(
                "class_weights",
                f"to be one weight vector of {c} numbers per trial",
                type(class_weights).__name__,
                "Pass a list of (C,) arrays, one per config.",
            )
        ) from err
    if w.shape != (k, c):
        raise ShapeMismatchError(
            expected(
                "class_weights",
                f"to have one (C,) = ({c},) vector per config, shape ({k}, {c})",
                f"shape {tuple(w.shape)}",
                "Pass one weight per class for every config.",
            )
        )
    bad = ~torch.isfinite(w).all(1) | (w < 0).any(1) | (w.sum(1) <= 0)
    if bad.any():
        rows = torch.nonzero(bad).flatten().tolist()
        raise InvalidWeightError(
            expected(
                "class_weights",
                "to be finite, non-negative and not all zero",
                f"invalid rows {rows}: {w[rows[0]].tolist()}",
                "Fix those weight vectors (uniform weights are all ones).",
            )
        )
    return w.float()


def _metrics(
    logits: npt.NDArray[np.float32], y: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Test metrics: :mod:`weightlab.lab.metrics` if it is there, else the basics."""
    try:
        from weightlab.lab.metrics import compute_metrics
    except ImportError:  # pragma: no cover - the metrics module ships with the lab
        z = torch.from_numpy(logits).unsqueeze(0)
        t = torch.from_numpy(y)
        return {
            "accuracy": float((z[0].argmax(1) == t).double().mean()),
            "balanced_accuracy": float(stacked_val_metric(z, t, "balanced_accuracy")[0]),
            "macro_f1": float(stacked_val_metric(z, t, "macro_f1")[0]),
        }, {}
    return compute_metrics(logits, y, counts)


def _finish(
    config: TrialConfig,
    losses: list[float],
    vals: list[float],
    failed_epoch: int,
    logits: npt.NDArray[np.float32] | None,
    data: LabData,
    timings: dict[str, float],
    extra: dict[str, Any],
) -> TrialResult:
    if failed_epoch:
        return TrialResult(
            config=config,
            status="failed",
            reason=f"non-finite loss at epoch {failed_epoch}",
            train_loss=losses[: failed_epoch - 1],
            val_metric=vals[: failed_epoch - 1],
            timings=timings,
            extra={**extra, "failed_epoch": failed_epoch},
        )
    assert logits is not None
    metrics, per_class = _metrics(logits, data.y_test.numpy(), data.train_counts)
    return TrialResult(
        config=config,
        status="done",
        train_loss=losses,
        val_metric=vals,
        metrics=metrics,
        per_class=per_class,
        test_logits=logits.tolist(),
        timings=timings,
        extra=extra,
    )


def _check_stack(configs: Sequence[TrialConfig]) -> None:
    if not configs:
        raise InvalidValueError(
            expected(
                "configs", "to hold at least one TrialConfig", "[]", "Pass the stack's trials."
            )
        )
    key = configs[0].stack_key
    for cfg in configs[1:]:
        if cfg.stack_key != key:
            first, this = configs[0].to_dict(), cfg.to_dict()
            differ = sorted(n for n in first if n not in PER_SLICE_FIELDS and first[n] != this[n])
            raise InvalidValueError(
                expected(
                    "configs",
                    f"to differ only in {_names(PER_SLICE_FIELDS)} (one stack)",
                    f"configs that also differ in {_names(differ)}",
                    "Group trials by TrialConfig.stack_key and train each group separately.",
                )
            )


def train_stack(
    data: LabData,
    configs: Sequence[TrialConfig],
    class_weights: Sequence[npt.ArrayLike] | npt.ArrayLike | torch.Tensor,
    *,
    loss_fn: LossFn | Sequence[LossFn] = cross_entropy_parts,
    val_metric: str = "balanced_accuracy",
    checkpoint: Checkpoint = "best",
    progress: ProgressFn | None = None,
    diagnostics: bool = False,
) -> list[TrialResult]:
    """Train the K trials of one stack as one vectorized model.

    Args:
        data: the loaded data (:func:`weightlab.lab.data.load_data`); the
            engine lays it out for ``configs[0].arch``.
        configs: K configurations sharing one ``stack_key``.
        class_weights: one class-weight vector (C,) per config, shape (K, C).
        loss_fn: the batch loss as parts (see :data:`LossFn`), or one per
            config (slices sharing a function object are computed together); applied
            to its slices at once with ``torch.func.vmap``, or slice by slice
            when the function cannot be vmapped (e.g. it validates with
            ``.item()``; pass ``validate_args=False`` to weightlab losses).
        val_metric: ``"balanced_accuracy"`` or ``"macro_f1"``, tracked per epoch.
        checkpoint: report the ``"best"`` validation epoch or the ``"last"`` one.
        progress: called as ``progress(epoch, epochs)`` after each epoch.
        diagnostics: record each slice's gradient diagnostics
            (:func:`weightlab.diagnostics.record_diagnostics`) at initialisation
            and after training, in ``extra["diagnostics"] = {"init": ...,
            "final": ...}``.

    Returns:
        One :class:`~weightlab.lab.trial.TrialResult` per config, in order.
        ``timings`` holds the trial's share of the stack's time (``"train"``,
        ``"eval"``) and the whole stack's (``"stack_train"``, ``"stack_eval"``).

    Raises:
        InvalidValueError: configs from different stacks, a bad name or setting.
        ShapeMismatchError, InvalidWeightError: class weights of the wrong
            shape, or negative, non-finite or all-zero ones.

    Example:
        >>> from weightlab.lab.data import load_data
        >>> data = load_data("digits-lt")
        >>> cfgs = [TrialConfig("digits-lt", "mlp", "adam", "none", None, seed=s, epochs=2,
        ...                     model_params=(("hidden", 16),)) for s in (0, 1)]
        >>> results = train_stack(data, cfgs, [[1.0] * 10] * 2)
        >>> [r.status for r in results], len(results[0].val_metric), len(results[1].test_logits)
        (['done', 'done'], 2, 500)
    """
    _check_stack(configs)
    retain_freed_memory()
    _check_metric(val_metric, checkpoint)
    cfg0 = configs[0]
    check_arch(cfg0.arch)
    _check_config(cfg0, len(data.y_train))
    k, c = len(configs), data.num_classes
    w = _weights(class_weights, k, c)
    d = data.inputs(cfg0.arch)
    model = build_stacked(
        cfg0.arch,
        d.arch_shape(cfg0.arch),
        c,
        [cfg.seed for cfg in configs],
        **dict(cfg0.model_params),
    )
    diagnose = _stack_diagnostics(model, cfg0, d, w, loss_fn, k) if diagnostics else None
    diag_init = diagnose() if diagnose else [None] * k
    params = list(model.parameters())
    opt = make_optimizer(cfg0.optimizer, params, lr=cfg0.lr)
    epochs, bs = cfg0.epochs, cfg0.batch_size
    n = len(d.y_train)
    orders = torch.stack([epoch_orders(cfg.seed, epochs, n) for cfg in configs], 1)  # (E, K, N)
    per_slice = _per_slice(loss_fn, k)
    alive = torch.ones(k, dtype=torch.bool)
    all_alive = on_cpu = d.x_train.device.type == "cpu"
    failed_at = torch.zeros(k, dtype=torch.long)
    loss_curve, val_curve = [], []
    best_val = torch.full((k,), -math.inf)
    best = [p.detach().clone() for p in params] if checkpoint == "best" else []
    t_train = t_eval = 0.0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = orders[epoch]
        # one gather per epoch, (K, N, ...); index_select over the flattened order
        # is ~3.5x faster than advanced indexing with a (K, N) index on the CPU
        flat = order.reshape(-1)
        xs = d.x_train.index_select(0, flat).view(k, n, *d.x_train.shape[1:])
        ys = d.y_train.index_select(0, flat).view(k, n)
        epoch_sum = torch.zeros(k)
        for start in range(0, n, bs):
            xb, yb = xs[:, start : start + bs], ys[:, start : start + bs]
            logits = model(xb)
            parts = per_slice(logits, yb, w)
            # the plain quotient, not parts.mean(): a batch whose weights sum to 0 is a
            # non-finite loss here (the slice fails), and one division beats five ops
            mean = parts.total / parts.normalizer
            finite = torch.isfinite(mean)
            # On the CPU reading a mask is free: while every slice is alive and
            # finite, skip the masking ops (6 small ops per step); elsewhere always
            # mask rather than synchronise with the device every step.
            healthy = on_cpu and all_alive and bool(finite.all())
            if healthy:
                masked = mean
            else:
                failed_at = torch.where(alive & ~finite, epoch + 1, failed_at)
                alive = alive & finite
                masked = torch.where(alive, mean, 0.0)
                all_alive = on_cpu and bool(alive.all())
            opt.zero_grad(set_to_none=True)  # backward then writes, not adds, the gradients
            masked.sum().backward()  # type: ignore[no-untyped-call]
            if not all_alive:  # zero the gradients of failed slices
                dead = ~alive
                for p in params:
                    if p.grad is not None:
                        p.grad.masked_fill_(dead.view(-1, *([1] * (p.dim() - 1))), 0.0)
            opt.step()
            epoch_sum += masked.detach() * yb.shape[1]
        loss_curve.append(epoch_sum / n)
        t1 = time.perf_counter()
        with torch.no_grad():
            score = stacked_val_metric(stacked_logits(model, d.x_val, k), d.y_val, val_metric)
            val_curve.append(score)
            if checkpoint == "best":
                better = alive & (score > best_val)
                best_val = torch.where(better, score, best_val)
                if on_cpu:  # copy only the slices that improved (reading the mask is free)
                    idx = torch.nonzero(better).flatten()
                    if len(idx):
                        for b, p in zip(best, params, strict=True):
                            b.index_copy_(0, idx, p.index_select(0, idx))
                else:
                    for b, p in zip(best, params, strict=True):
                        b.copy_(torch.where(better.view(-1, *([1] * (p.dim() - 1))), p, b))
        t_train += t1 - t0
        t_eval += time.perf_counter() - t1
        if progress is not None:
            progress(epoch + 1, epochs)
    t1 = time.perf_counter()
    with torch.no_grad():
        if checkpoint == "best":
            for p, b in zip(params, best, strict=True):
                p.copy_(b)
        test_logits = stacked_logits(model, d.x_test, k).numpy()
    t_eval += time.perf_counter() - t1
    diag_final = diagnose() if diagnose else [None] * k
    losses = torch.stack(loss_curve, 1).tolist()
    vals = torch.stack(val_curve, 1).tolist()
    fails = failed_at.tolist()
    timings = {
        "train": t_train / k,
        "eval": t_eval / k,
        "stack_train": t_train,
        "stack_eval": t_eval,
    }
    return [
        _finish(
            cfg,
            losses[i],
            vals[i],
            fails[i],
            test_logits[i],
            data,
            dict(timings),
            {"stack_size": k, "checkpoint": checkpoint}
            | ({"diagnostics": {"init": diag_init[i], "final": diag_final[i]}} if diagnose else {}),
        )
        for i, cfg in enumerate(configs)
    ]


def stacked_logits(model: nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    """Logits ``(K, N, C)`` of a K-slice model on inputs ``x`` (N, ...) that every slice sees.

    Evaluated in blocks of ``EVAL_ROWS // K`` examples (rows are independent,
    so the blocks only change where the work happens, not the result beyond
    float rounding).

    Example:
        >>> from weightlab.lab.architectures import build_stacked
        >>> model = build_stacked("mlp", (4,), 3, seeds=[0, 1], hidden=8)
        >>> stacked_logits(model, torch.rand(5000, 4), 2).shape
        torch.Size([2, 5000, 3])
    """
    rows = max(1, EVAL_ROWS // k)
    xs = x.unsqueeze(0).expand(k, *x.shape)
    if len(x) <= rows:
        return model(xs)  # type: ignore[no-any-return]
    return torch.cat([model(xs[:, s : s + rows]) for s in range(0, len(x), rows)], 1)


def _stack_diagnostics(
    model: nn.Module,
    cfg0: TrialConfig,
    d: LabData,
    w: torch.Tensor,
    loss_fn: LossFn | Sequence[LossFn],
    k: int,
) -> Callable[[], list[dict[str, Any] | None]]:
    """A snapshot function: every slice's gradient diagnostics at the model's current state."""
    fns = list(loss_fn) if isinstance(loss_fn, Sequence) else [loss_fn] * k
    mp = dict(cfg0.model_params)
    return lambda: diagnose_stack(model, cfg0.arch, d, w, fns, mp)


def _per_slice(loss_fn: LossFn | Sequence[LossFn], k: int) -> Callable[..., LossParts]:
    """One loss for all slices, or one per slice (grouped by function), over the K axis."""
    if callable(loss_fn):
        return _vectorize(loss_fn)
    fns = list(loss_fn)
    if len(fns) != k or not all(callable(f) for f in fns):
        raise InvalidValueError(
            expected(
                "loss_fn",
                f"to be one loss function or a sequence of {k} (one per config)",
                f"a sequence of {len(fns)}",
                "Pass one callable per config.",
            )
        )
    groups: dict[int, tuple[LossFn, list[int]]] = {}
    for i, f in enumerate(fns):
        groups.setdefault(id(f), (f, []))[1].append(i)
    if len(groups) == 1:
        return _vectorize(fns[0])
    parts = [(torch.tensor(idx), _vectorize(f)) for f, idx in groups.values()]
    inverse = torch.argsort(torch.cat([idx for idx, _ in parts]))

    def apply(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> LossParts:
        outs = [f(z[idx], y[idx], w[idx]) for idx, f in parts]
        total = torch.cat([o.total for o in outs])[inverse]
        return LossParts(total, torch.cat([o.normalizer for o in outs])[inverse])

    return apply


def _vectorize(loss_fn: LossFn) -> Callable[..., LossParts]:
    """``loss_fn`` over a leading slice axis: (K, B, C), (K, B), (K, C) -> parts of (K,)."""
    if loss_fn is cross_entropy_parts:  # takes the slice axis as it is
        return cross_entropy_parts
    vmapped = torch.func.vmap(loss_fn)
    state = {"vmap": True}

    def apply(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> LossParts:
        if state["vmap"]:
            try:
                return LossParts(*vmapped(z, y, w))
            except RuntimeError:  # data-dependent control flow: fall back to a loop
                state["vmap"] = False
        outs = [loss_fn(z[i], y[i], w[i]) for i in range(z.shape[0])]
        return LossParts(
            torch.stack([o.total for o in outs]), torch.stack([o.normalizer for o in outs])
        )

    return apply


def train_single(
    data: LabData,
    config: TrialConfig,
    class_weight: npt.ArrayLike | torch.Tensor,
    *,
    model: nn.Module | None = None,
    loss_fn: LossFn = cross_entropy_parts,
    val_metric: str = "balanced_accuracy",
    checkpoint: Checkpoint = "best",
    progress: ProgressFn | None = None,
    diagnostics: bool = False,
) -> TrialResult:
    """Train one trial with a plain loop: the reference for :func:`train_stack`.

    Same data order, loss normalisation, curves, checkpoint rule and failure
    handling as a slice of :func:`train_stack`, with a plain model and a
    plain optimizer.

    Args:
        data: the loaded data.
        config: the trial.
        class_weight: the trial's class weights, shape (C,).
        model: a user ``nn.Module`` mapping inputs ``(B, *shape)`` to logits
            ``(B, C)`` (``shape``: ``data.arch_shape(config.arch)`` for a lab
            arch, else ``data.input_shape``); default ``build_model`` of the
            config with ``seed=config.seed``.
        loss_fn: the batch loss as parts (see :data:`LossFn`).
        val_metric: ``"balanced_accuracy"`` or ``"macro_f1"``.
        checkpoint: ``"best"`` or ``"last"`` epoch for the test logits.
        progress: called as ``progress(epoch, epochs)`` after each epoch.
        diagnostics: record gradient diagnostics at initialisation and after
            training, as :func:`train_stack` does.

    Raises:
        InvalidValueError, ShapeMismatchError, InvalidWeightError: as :func:`train_stack`.

    Example:
        >>> from weightlab.lab.data import load_data
        >>> data = load_data("digits-lt")
        >>> cfg = TrialConfig("digits-lt", "mlp", "sgd", "none", None, seed=0, epochs=2)
        >>> train_single(data, cfg, [1.0] * 10).status
        'done'
    """
    _check_metric(val_metric, checkpoint)
    _check_config(config, len(data.y_train))
    retain_freed_memory()
    c = data.num_classes
    w = _weights([class_weight], 1, c)[0]
    lab_arch = config.arch in ARCHITECTURES
    d = data.inputs(config.arch) if lab_arch else data
    if model is None:
        check_arch(config.arch)
        shape = d.arch_shape(config.arch)
        model = build_model(config.arch, shape, c, seed=config.seed, **dict(config.model_params))
    diagnose = single_diagnostics(model, d, w, loss_fn) if diagnostics else None
    diag_init = diagnose() if diagnose else None
    opt = make_optimizer(config.optimizer, model.parameters(), lr=config.lr)
    epochs, bs, n = config.epochs, config.batch_size, len(d.y_train)
    orders = epoch_orders(config.seed, epochs, n)
    failed_epoch = 0
    losses: list[float] = []
    vals: list[float] = []
    best_val = -math.inf
    best_state: dict[str, torch.Tensor] = {}
    t_train = t_eval = 0.0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.train()
        total = torch.zeros(())
        for start in range(0, n, bs):
            idx = orders[epoch, start : start + bs]
            xb, yb = d.x_train[idx], d.y_train[idx]
            parts = loss_fn(model(xb), yb, w)
            loss = parts.total / parts.normalizer  # as train_stack: 0/0 fails the trial
            if not torch.isfinite(loss):
                failed_epoch = epoch + 1
                break
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += loss.detach() * len(yb)
        t1 = time.perf_counter()
        t_train += t1 - t0
        if failed_epoch:
            break
        losses.append(float(total / n))
        model.eval()
        with torch.no_grad():
            score = float(stacked_val_metric(model(d.x_val).unsqueeze(0), d.y_val, val_metric)[0])
        vals.append(score)
        if checkpoint == "best" and score > best_val:
            best_val = score
            best_state = {name: t.detach().clone() for name, t in model.state_dict().items()}
        t_eval += time.perf_counter() - t1
        if progress is not None:
            progress(epoch + 1, epochs)
    logits = None
    t1 = time.perf_counter()
    if not failed_epoch:
        if best_state:
            model.load_state_dict(best_state)
        model.eval()
        with torch.no_grad():
            logits = model(d.x_test).numpy()
    t_eval += time.perf_counter() - t1
    extra: dict[str, Any] = {"stack_size": 1, "checkpoint": checkpoint}
    if diagnose:
        final = None if failed_epoch else diagnose()
        extra["diagnostics"] = {"init": diag_init, "final": final}
    timings = {"train": t_train, "eval": t_eval}
    return _finish(
        config,
        losses,
        vals,
        failed_epoch,
        logits,
        data,
        timings,
        extra,
    )
