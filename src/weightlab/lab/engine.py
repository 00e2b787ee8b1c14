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

**Curves and checkpoint.** ``epochs`` is a maximum: a slice stops after
``patience`` epochs without a better validation score, or when the
``on_epoch`` hook prunes it, and leaves the stack (see :func:`train_stack`).
After every epoch the engines record the mean training loss (over the epoch's
rows) and the validation metric (``"balanced_accuracy"`` or ``"macro_f1"``).
The reported test logits and metrics come from the
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
from typing import Any, Literal, cast

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
from weightlab.lab.loss_kernel import SoftmaxForm, stack_forms, stacked_form_parts
from weightlab.lab.optim import (
    BUILTIN_WEIGHT_DECAY,
    check_lr,
    check_weight_decay,
    default_lr,
    make_optimizer,
)
from weightlab.lab.stacked import VmapStack, replace_slices, select_slices
from weightlab.lab.trial import PER_SLICE_FIELDS, TrialConfig, TrialResult
from weightlab.lab.weightings import LabLoss, cross_entropy_parts

__all__ = [
    "VAL_METRICS",
    "EpochHook",
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
    *,
    pruned: str = "",
    val_metrics: dict[str, float] | None = None,
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
    if pruned:
        return TrialResult(
            config=config,
            status="pruned",
            reason=pruned,
            train_loss=losses,
            val_metric=vals,
            timings=timings,
            extra=extra,
        )
    if val_metrics is not None:
        extra = {**extra, "val_metrics": val_metrics}
    if logits is None:  # a tuning trial: validation only, the test split is not looked at
        return TrialResult(
            config=config, status="done", train_loss=losses, val_metric=vals,
            timings=timings, extra=extra,
        )  # fmt: skip
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


def _val_metrics(logits: npt.NDArray[np.float32], data: LabData) -> list[dict[str, float]]:
    """Validation metrics of slices' logits ``(K, N_val, C)``, or ``{}`` each where not finite."""
    from weightlab.lab.metrics import stacked_metrics

    finite = np.isfinite(logits).all(axis=(1, 2))
    out: list[dict[str, float]] = [{} for _ in range(len(logits))]
    if finite.any():
        scores = stacked_metrics(logits[finite], data.y_val.numpy(), data.train_counts)
        for i, m in zip(np.nonzero(finite)[0].tolist(), scores, strict=True):
            out[i] = m
    return out


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


#: ``on_epoch(epoch, slices, scores) -> {slice: reason}``: called after each epoch (1-based)
#: with the indices (into the stack's configs) of the slices still training and their
#: validation scores; the slices it returns are pruned there, with that reason.
EpochHook = Callable[[int, list[int], list[float]], dict[int, str]]


def _check_patience(patience: object) -> None:
    if patience is not None and (
        isinstance(patience, bool) or not isinstance(patience, int) or patience < 1
    ):
        raise InvalidValueError(
            expected("patience", "to be None or an integer >= 1", repr(patience),
                     "Pass e.g. patience=5 (epochs without a better validation score).")
        )  # fmt: skip


def _rates(configs: Sequence[TrialConfig]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each slice's learning rate (K,) and, if any config sets one, its decoupled decay (K,)."""
    lrs = torch.tensor(
        [default_lr(c.optimizer) if c.lr is None else check_lr(c.lr) for c in configs]
    )
    if all(c.weight_decay is None for c in configs):
        return lrs, None
    decay = [
        BUILTIN_WEIGHT_DECAY[c.optimizer] if c.weight_decay is None
        else check_weight_decay(c.weight_decay)
        for c in configs
    ]  # fmt: skip
    return lrs, torch.tensor(decay)


def _deferred(
    late: Any, drw_epochs: Sequence[int] | None, k: int, c: int, epochs: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Validate deferred re-weighting: late weights (K, C) and each slice's switch epoch (K,)."""
    if late is None and drw_epochs is None:
        return None, None
    if late is None or drw_epochs is None or len(drw_epochs) != k:
        raise InvalidValueError(
            expected("late_class_weights, drw_epochs",
                     f"to be given together, one late (C,) vector and one epoch per config ({k})",
                     "one without the other, or the wrong length",
                     "Pass both (epochs >= the run's length never switch), or neither.")
        )  # fmt: skip
    return _weights(late, k, c), torch.tensor([min(int(e), epochs) for e in drw_epochs])


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
    late_class_weights: Sequence[npt.ArrayLike] | npt.ArrayLike | None = None,
    drw_epochs: Sequence[int] | None = None,
    patience: int | None = None,
    on_epoch: EpochHook | None = None,
    evaluate_test: bool = True,
) -> list[TrialResult]:
    r"""Train the K trials of one stack as one vectorized model.

    Slices leave the stack as they finish: a slice that diverged, one whose
    validation score has not improved for ``patience`` epochs (early
    stopping; it reports its best epoch) and one that ``on_epoch`` prunes
    are cut out of the stacked parameters and the optimizer state
    (:func:`~weightlab.lab.stacked.select_slices`), so the remaining slices
    train on at the cost of a smaller stack. Every slice has its own learning
    rate (``config.lr``) and decoupled weight decay (``config.weight_decay``):
    with one shared rate the optimizer steps at it; otherwise it steps at rate
    1 and each slice's update is scaled by its rate, which is exact because
    every lab update rule is linear in the rate given its state
    (:mod:`weightlab.lab.optim`). Weight decay, when a config sets it, is
    :math:`\theta \leftarrow \theta - \eta_k \lambda_k \theta` after each step
    for every optimizer (AdamW's rule).

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
        late_class_weights: deferred re-weighting: the class weights (K, C)
            each slice switches to at its epoch of ``drw_epochs`` (0-based; the
            run's length or more: never).
        drw_epochs: see ``late_class_weights``.
        patience: stop a slice after this many epochs without a better
            validation score (``None``: train every epoch).
        on_epoch: a pruner, see :data:`EpochHook`; pruned slices get
            ``status="pruned"`` with their curves so far.
        evaluate_test: ``False`` leaves the test split alone (a tuner selects
            on validation; the results then hold no test metrics or logits).

    Returns:
        One :class:`~weightlab.lab.trial.TrialResult` per config, in order;
        ``extra["val_metrics"]`` holds the validation metrics at the reported
        epoch. ``timings`` holds the trial's share of the stack's time
        (``"train"``, ``"eval"``) and the whole stack's (``"stack_train"``,
        ``"stack_eval"``).

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
    _check_patience(patience)
    cfg0 = configs[0]
    check_arch(cfg0.arch)
    _check_config(cfg0, len(data.y_train))
    k, c = len(configs), data.num_classes
    w_all = _weights(class_weights, k, c)
    late_all, drw_all = _deferred(late_class_weights, drw_epochs, k, c, cfg0.epochs)
    lrs, decay = _rates(configs)
    per_slice = _per_slice(loss_fn, k, c)  # validates a sequence of losses
    fns_all = [loss_fn] * k if callable(loss_fn) else list(loss_fn)
    why = check_arch(cfg0.arch).unstackable
    if why:
        return [
            _one_by_one(
                data, cfg, w_all[i], fns_all[i], why, i, on_epoch, val_metric=val_metric,
                checkpoint=checkpoint, progress=progress, diagnostics=diagnostics,
                late_class_weight=None if late_all is None else late_all[i],
                drw_epoch=None if drw_all is None else int(drw_all[i]),
                patience=patience, evaluate_test=evaluate_test,
            )
            for i, cfg in enumerate(configs)
        ]  # fmt: skip
    d = data.inputs(cfg0.arch)
    mp = dict(cfg0.model_params)
    seeds = [cfg.seed for cfg in configs]
    model = build_stacked(cfg0.arch, d.arch_shape(cfg0.arch), c, seeds, **mp)
    diag_init = diagnose_stack(model, cfg0.arch, d, w_all, fns_all, mp) if diagnostics else None
    params: list[torch.Tensor] = list(model.parameters())
    shared_lr = bool((lrs == lrs[0]).all())
    opt = make_optimizer(
        cfg0.optimizer, cast(list[nn.Parameter], params), lr=float(lrs[0]) if shared_lr else 1.0,
        weight_decay=None if decay is None else 0.0,
    )  # fmt: skip
    rescale = not shared_lr or decay is not None
    epochs, bs = cfg0.epochs, cfg0.batch_size
    n = len(d.y_train)
    orders = torch.stack([epoch_orders(cfg.seed, epochs, n) for cfg in configs], 1)  # (E, K, N)
    idx = torch.arange(k)  # the configs still in the stack, in stack order
    alive = torch.ones(k, dtype=torch.bool)
    all_alive = on_cpu = d.x_train.device.type == "cpu"
    failed_at = torch.zeros(k, dtype=torch.long)
    losses: list[list[float]] = [[] for _ in range(k)]
    vals: list[list[float]] = [[] for _ in range(k)]
    pruned: dict[int, str] = {}
    stopped: dict[int, int] = {}  # early-stopped slice -> its last epoch
    saved: dict[int, list[torch.Tensor]] = {}  # a slice that left the stack: its checkpoint
    saved_state: dict[int, dict[tuple[int, str], torch.Tensor]] = {}  # ... and optimizer state
    best_val = torch.full((k,), -math.inf)
    since_best = torch.zeros(k, dtype=torch.long)
    best = [p.detach().clone() for p in params] if checkpoint == "best" else []
    t_train = t_eval = 0.0
    for epoch in range(epochs):
        m = len(idx)
        if m == 0:
            break
        t0 = time.perf_counter()
        w = w_all.index_select(0, idx)
        if late_all is not None and drw_all is not None:
            late = (epoch >= drw_all.index_select(0, idx)).view(-1, 1)
            w = torch.where(late, late_all.index_select(0, idx), w)
        scale = lrs.index_select(0, idx)
        shrink = scale * decay.index_select(0, idx) if decay is not None else None
        order = orders[epoch].index_select(0, idx)
        # one gather per epoch, (K, N, ...); index_select over the flattened order
        # is ~3.5x faster than advanced indexing with a (K, N) index on the CPU
        flat = order.reshape(-1)
        xs = d.x_train.index_select(0, flat).view(m, n, *d.x_train.shape[1:])
        ys = d.y_train.index_select(0, flat).view(m, n)
        epoch_sum = torch.zeros(m)
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
                failed_at[idx] = torch.where(alive & ~finite, epoch + 1, failed_at[idx])
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
            before = [p.detach().clone() for p in params] if rescale else []
            opt.step()
            if rescale:
                _rescale_step(params, before, scale, shrink, shared_lr)
            epoch_sum += masked.detach() * yb.shape[1]
        t1 = time.perf_counter()
        with torch.no_grad():
            score = stacked_val_metric(stacked_logits(model, d.x_val, m), d.y_val, val_metric)
            better = alive & (score > best_val)
            best_val = torch.where(better, score, best_val)
            since_best = torch.where(better, 0, since_best + 1)
            if checkpoint == "best":
                _keep_best(best, params, better, on_cpu)
        t_train += t1 - t0
        t_eval += time.perf_counter() - t1
        ids, scores = idx.tolist(), score.tolist()
        for i, loss, val in zip(ids, (epoch_sum / n).tolist(), scores, strict=True):
            losses[i].append(loss)
            vals[i].append(val)
        leaving = _leaving(ids, alive, since_best, patience, epoch + 1 < epochs)
        stopped.update({i: epoch + 1 for i in leaving if bool(alive[ids.index(i)])})
        if on_epoch is not None:
            live = [(i, s) for i, s, a in zip(ids, scores, alive.tolist(), strict=True)
                    if a and i not in leaving]  # fmt: skip
            verdicts = on_epoch(epoch + 1, [i for i, _ in live], [s for _, s in live])
            for i, reason in verdicts.items():
                pruned[i] = reason or f"pruned at epoch {epoch + 1}"
                leaving.add(i)
        if leaving and epoch + 1 < epochs:
            keep = [pos for pos, i in enumerate(ids) if i not in leaving]
            for pos, i in enumerate(ids):
                if i in stopped and i not in pruned:
                    saved[i] = [(best or params)[j][pos].clone() for j in range(len(params))]
                    saved_state[i] = _state_rows(opt, params, pos)
            keep_t = torch.tensor(keep, dtype=torch.long)
            select_slices(model, keep_t, opt, [best] if best else [])
            params = list(model.parameters())
            idx, alive = idx.index_select(0, keep_t), alive.index_select(0, keep_t)
            best_val, since_best = best_val[keep_t], since_best[keep_t]
            subset = [fns_all[i] for i in idx.tolist()] or fns_all[:1]
            per_slice = _per_slice(subset, len(subset), c)
            all_alive = on_cpu and bool(alive.all())
        if progress is not None:
            progress(epoch + 1, epochs)
    fails = failed_at.tolist()
    report = [i for i in range(k) if not fails[i] and i not in pruned]
    t1 = time.perf_counter()
    val_scores: list[dict[str, float]] = []
    test_logits = None
    diag_final: list[dict[str, Any] | None] = [None] * len(report)
    if report:
        with torch.no_grad():
            _load_slices(model, params, best, idx.tolist(), saved, report, opt, saved_state)
            val_logits = stacked_logits(model, d.x_val, len(report)).numpy()
            val_scores = _val_metrics(val_logits, data)
            if evaluate_test:
                test_logits = stacked_logits(model, d.x_test, len(report)).numpy()
        if diagnostics:
            fns = [fns_all[i] for i in report]
            diag_final = diagnose_stack(
                model, cfg0.arch, d, w_all[report], fns, mp, optimizer=opt
            )
    t_eval += time.perf_counter() - t1
    timings = {
        "train": t_train / k, "eval": t_eval / k, "stack_train": t_train, "stack_eval": t_eval
    }  # fmt: skip
    at = {i: pos for pos, i in enumerate(report)}
    vmapped = isinstance(model, VmapStack)
    engine = "stacked: torch.func vmap" if vmapped else "stacked: hand-batched"
    results = []
    for i, cfg in enumerate(configs):
        extra: dict[str, Any] = {"stack_size": k, "checkpoint": checkpoint, "engine": engine}
        if i in stopped and i not in pruned:
            extra["stopped_epoch"] = stopped[i]
        if diag_init is not None:
            final = diag_final[at[i]] if i in at else None
            extra["diagnostics"] = {"init": diag_init[i], "final": final}
        slot = at.get(i)
        results.append(
            _finish(
                cfg, losses[i], vals[i], fails[i],
                None if test_logits is None or slot is None else test_logits[slot],
                data, dict(timings), extra, pruned=pruned.get(i, ""),
                val_metrics=None if slot is None else val_scores[slot],
            )
        )  # fmt: skip
    return results


def _one_by_one(
    data: LabData,
    config: TrialConfig,
    class_weight: torch.Tensor,
    loss_fn: LossFn,
    why: str,
    index: int,
    on_epoch: EpochHook | None,
    **kw: Any,
) -> TrialResult:
    """A slice of an unstackable architecture, trained alone; ``on_epoch`` sees it as ``index``."""
    hook = None
    if on_epoch is not None:
        def hook(epoch: int, _: list[int], scores: list[float]) -> dict[int, str]:
            verdict = on_epoch(epoch, [index], scores)
            return {0: verdict[index]} if index in verdict else {}

    result = train_single(data, config, class_weight, loss_fn=loss_fn, on_epoch=hook, **kw)
    result.extra["engine"] = f"one by one: {why}"
    return result


def _rescale_step(
    params: list[torch.Tensor],
    before: list[torch.Tensor],
    lr: torch.Tensor,
    shrink: torch.Tensor | None,
    shared_lr: bool,
) -> None:
    """Per-slice rates: ``p = b + lr_k (p - b)`` after a rate-1 step, then ``p -= lr_k wd_k b``."""
    with torch.no_grad():
        for p, b in zip(params, before, strict=True):
            view = (-1, *([1] * (p.dim() - 1)))
            if not shared_lr:
                p.sub_(b).mul_(lr.view(view)).add_(b)
            if shrink is not None:
                p.sub_(b * shrink.view(view))


def _keep_best(
    best: list[torch.Tensor], params: list[torch.Tensor], better: torch.Tensor, on_cpu: bool
) -> None:
    """Copy the slices whose validation score improved into the best checkpoint."""
    if on_cpu:  # copy only the slices that improved (reading the mask is free)
        idx = torch.nonzero(better).flatten()
        if len(idx):
            for b, p in zip(best, params, strict=True):
                b.index_copy_(0, idx, p.index_select(0, idx))
    else:
        for b, p in zip(best, params, strict=True):
            b.copy_(torch.where(better.view(-1, *([1] * (p.dim() - 1))), p, b))


def _leaving(
    ids: list[int], alive: torch.Tensor, since_best: torch.Tensor, patience: int | None,
    more: bool,
) -> set[int]:
    """Slices that leave the stack after this epoch: diverged, or out of patience."""
    if not more:
        return set()
    gone = {i for i, a in zip(ids, alive.tolist(), strict=True) if not a}
    if patience is not None:
        tired = (since_best >= patience).tolist()
        gone |= {i for i, t in zip(ids, tired, strict=True) if t}
    return gone


def _state_rows(
    opt: torch.optim.Optimizer, params: list[torch.Tensor], pos: int
) -> dict[tuple[int, str], torch.Tensor]:
    """Slice ``pos``'s rows of the optimizer's per-parameter state (momentum, moments)."""
    rows = {}
    for j, p in enumerate(params):
        for key, v in opt.state.get(p, {}).items():
            if torch.is_tensor(v) and v.shape == p.shape:
                rows[(j, key)] = v[pos].clone()
    return rows


def _load_slices(
    model: nn.Module,
    params: list[torch.Tensor],
    best: list[torch.Tensor],
    ids: list[int],
    saved: dict[int, list[torch.Tensor]],
    report: list[int],
    opt: torch.optim.Optimizer | None = None,
    saved_state: dict[int, dict[tuple[int, str], torch.Tensor]] | None = None,
) -> None:
    """Put the reported slices' checkpoints into the stack, in ``report`` order.

    The optimizer's state follows them (the rows of the slices still in the
    stack, and those kept when a slice left), so the final diagnostics read
    each reported slice's own optimizer state.
    """
    final = best or params
    if not saved and ids == report:
        if best:
            for p, b in zip(params, best, strict=True):
                p.copy_(b)
        return
    at = {i: pos for pos, i in enumerate(ids)}
    stacked = [
        torch.stack([saved[i][j] if i in saved else final[j][at[i]] for i in report])
        for j in range(len(params))
    ]
    states: list[dict[str, Any] | None] = []
    for j, p in enumerate(params):
        state = dict(opt.state.get(p, {})) if opt is not None else {}
        for key, v in list(state.items()):
            if not (torch.is_tensor(v) and v.shape == p.shape):
                continue
            rows = [(saved_state or {}).get(i, {}).get((j, key)) if i in saved else v[at[i]]
                    for i in report]  # fmt: skip
            if any(r is None for r in rows):
                state = {}
                break
            state[key] = torch.stack([r for r in rows if r is not None])
        states.append(state or None)
    order = iter(stacked)
    replace_slices(model, lambda _: next(order))
    if opt is not None:
        swap = dict(zip((id(p) for p in params), model.parameters(), strict=True))
        for p, kept in zip(params, states, strict=True):
            opt.state.pop(p, None)
            if kept is not None:
                opt.state[swap[id(p)]] = kept
        for group in opt.param_groups:
            group["params"] = [swap.get(id(p), p) for p in group["params"]]
    for mod in model.modules():
        if hasattr(mod, "k"):
            setattr(mod, "k", len(report))  # noqa: B010 - nn.Module types its attributes


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


def _per_slice(
    loss_fn: LossFn | Sequence[LossFn], k: int, num_classes: int | None = None
) -> Callable[..., LossParts]:
    """One loss for all slices, or one per slice, over the K axis.

    Slices whose losses carry a softmax form (:mod:`weightlab.lab.loss_kernel`:
    every lab weighting's) are computed in one batched call, each with its own
    form; the others grouped by function object.
    """
    if callable(loss_fn):
        fns = [loss_fn] * k
    else:
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
    forms = [getattr(f, "form", None) for f in fns]
    if all(f is cross_entropy_parts for f in fns):
        return cross_entropy_parts  # the fused kernel, the slice axis as it is
    groups: dict[object, tuple[Callable[..., LossParts], list[int]]] = {}
    with_form = [i for i, f in enumerate(forms) if f is not None]
    if with_form and num_classes is not None:
        stacked = stack_forms([cast(SoftmaxForm, forms[i]) for i in with_form], num_classes)

        cache: dict[tuple[torch.dtype, torch.device], Any] = {}

        def batched(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> LossParts:
            key = (z.dtype, z.device)
            if key not in cache:
                cache[key] = stacked.to(z)
            return stacked_form_parts(z, y, w, cache[key])

        groups["form"] = (batched, with_form)
    for i, f in enumerate(fns):
        if i not in groups.get("form", (None, []))[1]:
            groups.setdefault(id(f), (_vectorize(f), []))[1].append(i)
    if len(groups) == 1:
        return next(iter(groups.values()))[0]
    parts = [(torch.tensor(idx), f) for f, idx in groups.values()]
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
    late_class_weight: npt.ArrayLike | None = None,
    drw_epoch: int | None = None,
    patience: int | None = None,
    on_epoch: EpochHook | None = None,
    evaluate_test: bool = True,
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
        late_class_weight: deferred re-weighting's later class weights (C,), as
            :func:`train_stack`'s ``late_class_weights``.
        drw_epoch: the epoch they switch on (0-based).
        patience: early stopping, as :func:`train_stack`'s.
        on_epoch: a pruner, as :func:`train_stack`'s; it sees the one slice as index 0.
        evaluate_test: ``False`` leaves the test split alone.

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
    _check_patience(patience)
    _check_config(config, len(data.y_train))
    retain_freed_memory()
    c = data.num_classes
    w_early = _weights([class_weight], 1, c)[0]
    late_w, drw = _deferred(
        None if late_class_weight is None else [late_class_weight],
        None if drw_epoch is None else [drw_epoch], 1, c, config.epochs,
    )  # fmt: skip
    lrs, decay = _rates([config])
    lab_arch = config.arch in ARCHITECTURES
    d = data.inputs(config.arch) if lab_arch else data
    if model is None:
        check_arch(config.arch)
        shape = d.arch_shape(config.arch)
        model = build_model(config.arch, shape, c, seed=config.seed, **dict(config.model_params))
    diagnose = single_diagnostics(model, d, w_early, loss_fn) if diagnostics else None
    diag_init = diagnose() if diagnose else None
    opt = make_optimizer(
        config.optimizer, model.parameters(), lr=float(lrs[0]),
        weight_decay=None if decay is None else 0.0,
    )  # fmt: skip
    shrink = None if decay is None else float(lrs[0] * decay[0])
    epochs, bs, n = config.epochs, config.batch_size, len(d.y_train)
    orders = epoch_orders(config.seed, epochs, n)
    failed_epoch = 0
    losses: list[float] = []
    vals: list[float] = []
    best_val = -math.inf
    since_best = 0
    pruned = ""
    stopped = 0
    best_state: dict[str, torch.Tensor] = {}
    t_train = t_eval = 0.0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        late = late_w is not None and drw is not None and epoch >= int(drw[0])
        w = late_w[0] if late and late_w is not None else w_early
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
            before = [p.detach().clone() for p in model.parameters()] if shrink else []
            opt.step()
            if shrink:
                with torch.no_grad():
                    for p, b in zip(model.parameters(), before, strict=True):
                        p.sub_(b * shrink)
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
        since_best = 0 if score > best_val else since_best + 1
        if checkpoint == "best" and score > best_val:
            best_state = {name: t.detach().clone() for name, t in model.state_dict().items()}
        best_val = max(best_val, score)
        t_eval += time.perf_counter() - t1
        if progress is not None:
            progress(epoch + 1, epochs)
        if on_epoch is not None:
            verdict = on_epoch(epoch + 1, [0], [score])
            if 0 in verdict:
                pruned = verdict[0] or f"pruned at epoch {epoch + 1}"
                break
        if patience is not None and since_best >= patience and epoch + 1 < epochs:
            stopped = epoch + 1
            break
    logits = val_scores = None
    t1 = time.perf_counter()
    if not failed_epoch and not pruned:
        if best_state:
            model.load_state_dict(best_state)
        model.eval()
        with torch.no_grad():
            val_scores = _val_metrics(model(d.x_val).numpy()[None], data)[0]
            logits = model(d.x_test).numpy() if evaluate_test else None
    t_eval += time.perf_counter() - t1
    extra: dict[str, Any] = {"stack_size": 1, "checkpoint": checkpoint}
    if stopped:
        extra["stopped_epoch"] = stopped
    if diagnose:
        final = None if failed_epoch or pruned else diagnose(optimizer=opt)
        extra["diagnostics"] = {"init": diag_init, "final": final}
    timings = {"train": t_train, "eval": t_eval}
    return _finish(
        config, losses, vals, failed_epoch, logits, data, timings, extra,
        pruned=pruned, val_metrics=val_scores,
    )  # fmt: skip
