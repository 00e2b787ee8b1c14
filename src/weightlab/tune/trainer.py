"""What a worker runs for the tuner: one stack of proposed trials, pruned inside the stack.

The tuner's Optuna study lives in the driver; workers (a process pool, a Ray
cluster) share no Optuna storage with it. So each stack travels as a
:class:`StackJob`: its trial configurations plus a :class:`PruneContext`, a
snapshot of the study's finished trials (their per-epoch validation values
and the pruner's own bookkeeping) taken when the stack was handed out. The
worker rebuilds that snapshot in an in-memory Optuna study, opens one trial
per slice at the same trial numbers the driver gave them, reports every
slice's validation metric after each epoch and asks Optuna's pruner
(``Trial.should_prune``) whether to stop it; a pruned slice leaves the stack
(:func:`weightlab.lab.engine.train_stack`'s ``on_epoch``). The pruning
decisions are Optuna's own, against the trials finished when the stack
started plus its live siblings, as Optuna decides for parallel workers that
see a shared storage at that moment.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast, overload

import numpy as np

from weightlab.lab.data import LabData
from weightlab.lab.engine import VAL_METRICS, train_stack
from weightlab.lab.trial import TrialConfig, TrialResult
from weightlab.lab.weightings import resolve_weighting

__all__ = ["PRUNER_ATTRS", "PruneContext", "StackJob", "TuneTrainer"]

#: User attribute of a driver trial holding the pruner's system attributes from its worker.
PRUNER_ATTRS = "weightlab:pruner_attrs"


@dataclass(frozen=True)
class PruneContext:
    """What a worker needs to run the tuner's pruner on a stack (picklable).

    Attributes:
        pruner: the Optuna pruner.
        study_name: the driver study's name (Hyperband's brackets hash it).
        direction: ``"maximize"`` or ``"minimize"``.
        history: every trial numbered before this stack's first, in number
            order (``FrozenTrial``; trials still running elsewhere as failed
            placeholders, so the numbers line up).
        numbers: the driver's trial number of each slice, in stack order.
    """

    pruner: Any
    study_name: str
    direction: str
    history: tuple[Any, ...]
    numbers: tuple[int, ...]


@dataclass(frozen=True)
class StackJob(Sequence[TrialConfig]):
    """A stack of trial configurations and, when the tuner prunes, its :class:`PruneContext`."""

    configs: tuple[TrialConfig, ...]
    prune: PruneContext | None = None

    @overload
    def __getitem__(self, i: int) -> TrialConfig: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[TrialConfig]: ...
    def __getitem__(self, i: int | slice) -> TrialConfig | Sequence[TrialConfig]:
        return self.configs[i]

    def __len__(self) -> int:
        return len(self.configs)

    def __iter__(self) -> Iterator[TrialConfig]:
        return iter(self.configs)


class _StackPruner:
    """The ``on_epoch`` hook: Optuna's pruner over an in-memory copy of the driver's study."""

    def __init__(self, ctx: PruneContext) -> None:
        import optuna

        self.ctx = ctx
        self.study = optuna.create_study(
            storage=optuna.storages.InMemoryStorage(),
            study_name=ctx.study_name,
            direction=cast(Any, ctx.direction),
            pruner=ctx.pruner,
            sampler=optuna.samplers.RandomSampler(seed=0),
        )
        self.study.add_trials(list(ctx.history))
        self.trials = []
        count = len(ctx.history)  # (study.trials deep-copies every trial: count instead)
        gap = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL)
        for number in ctx.numbers:  # at the driver's numbers (Hyperband's brackets hash them)
            if number < count:
                raise RuntimeError(f"trial number {number} is not after the stack's history")
            self.study.add_trials([gap] * (number - count))  # trials of stacks in flight
            self.trials.append(self.study.ask())
            count = number + 1
        self.pruned: dict[int, int] = {}

    def __call__(self, epoch: int, slices: list[int], scores: list[float]) -> dict[int, str]:
        import optuna

        out = {}
        for i, score in zip(slices, scores, strict=True):
            trial = self.trials[i]
            trial.report(float(score), epoch)
            if trial.should_prune():
                out[i] = f"pruned at epoch {epoch} by {type(self.ctx.pruner).__name__}"
                self.pruned[i] = epoch
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return out

    def attrs(self, i: int) -> dict[str, Any]:
        """The pruner's bookkeeping on slice ``i`` (e.g. successive halving's rungs)."""
        frozen = self.study._storage.get_trial(self.trials[i]._trial_id)
        return dict(frozen.system_attrs)


@dataclass(frozen=True)
class TuneTrainer:
    """Trains a tuner's :class:`StackJob` (a picklable :data:`~weightlab.lab.executors.TrainStack`).

    Validation only (``evaluate_test=False``: the test split judges once, at
    the end); each slice's weighting resolved once (class weights, loss,
    deferred re-weighting); Optuna's pruner inside the stack when the job
    carries a :class:`PruneContext`.

    Attributes:
        metric: the validation metric tracked per epoch (and reported to the pruner).
        patience: early stopping of a slice after this many epochs without a
            better validation score (``None``: off).
        evaluate_test: also evaluate on the test split (the final judging runs do).
    """

    metric: str = "balanced_accuracy"
    patience: int | None = None
    evaluate_test: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __call__(self, data: LabData, job: Sequence[TrialConfig]) -> list[TrialResult]:
        """Train one stack; pruned slices come back with ``status="pruned"``."""
        configs = list(job)
        ctx = job.prune if isinstance(job, StackJob) else None
        pruner = _StackPruner(ctx) if ctx is not None else None
        resolved = [resolve_weighting(c, data.train_counts) for c in configs]
        epochs = configs[0].epochs
        deferred = any(r.late_class_weight is not None for r in resolved)
        results = train_stack(
            data,
            configs,
            np.stack([r.class_weight for r in resolved]),
            loss_fn=[r.loss for r in resolved],
            val_metric=self.metric if self.metric in VAL_METRICS else "balanced_accuracy",
            late_class_weights=(
                np.stack(
                    [
                        r.class_weight if r.late_class_weight is None else r.late_class_weight
                        for r in resolved
                    ]
                )
                if deferred
                else None
            ),
            drw_epochs=[r.drw_epoch(epochs) for r in resolved] if deferred else None,
            patience=configs[0].patience if configs[0].patience is not None else self.patience,
            on_epoch=pruner,
            evaluate_test=self.evaluate_test,
        )
        for i, res in enumerate(results):
            res.extra.update(self.extra)
            if pruner is not None:
                res.extra[PRUNER_ATTRS] = pruner.attrs(i)
        return results
