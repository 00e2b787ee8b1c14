r"""Tuning a weighting: search on validation, K trials per stack, then judge once on test.

:func:`run_tuning` runs two phases through the lab's runner
(:func:`weightlab.lab.runner.run_study`), so both are stored trial by trial
and resume after a stop:

1. **Search.** One Optuna study per (architecture, optimizer) cell
   (:class:`~weightlab.tune.source.OptunaSource`): ``batch`` proposals at a
   time train as one stack on the training split and are scored on the
   validation split only (the engine does not look at the test split),
   pruned inside the stack by the pruner. The Optuna studies live in a
   journal file beside the store (``<store>.optuna-journal``: one writer,
   the driver; Optuna's RDB storage on SQLite costs ~10x more per ask).
2. **Judge.** The best configuration of each cell (the Pareto set, up to
   ``pareto_max``, with several metrics) is retrained on ``judge_seeds``
   next to ``none`` and ``balanced`` trained the same way (same lr, decay,
   epochs), and evaluated on the test split once. Each gain over ``none``
   (and over ``balanced``) is a paired difference per seed, reported with
   its mean, spread and a 95 % interval that adds test-row bootstrap noise to
   seed noise (:func:`weightlab.lab.verdicts.gain_interval`).

The tuning trials carry ``extra["tune_role"] = "search"``, the judging
trials ``"judge"``; the outcome goes to the store's ``"tune"`` metadata.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from weightlab.errors import InvalidValueError, WeightlabError, expected, names
from weightlab.lab.data import LabData, load_data
from weightlab.lab.executors import StackExecutor
from weightlab.lab.metrics import METRIC_NAMES
from weightlab.lab.runner import Progress, run_study
from weightlab.lab.sources import TrialSource
from weightlab.lab.spec import StudySpec, group_stacks
from weightlab.lab.store import ResultStore
from weightlab.lab.trial import TrialConfig, TrialResult
from weightlab.lab.weightings import resolve_weighting, weighting_label
from weightlab.tune.source import TRIAL_ID, Cell, OptunaSource
from weightlab.tune.space import SearchSpace
from weightlab.tune.trainer import TuneTrainer

__all__ = [
    "LOWER_IS_BETTER",
    "PRUNERS",
    "SAMPLERS",
    "CellOutcome",
    "Judged",
    "TuneOutcome",
    "TuneSpec",
    "journal_path",
    "require_optuna",
    "run_tuning",
]

#: Samplers by name (Optuna's): TPE by default; ``grid`` is ``BruteForceSampler`` over each
#: parameter's low end, default and high end.
SAMPLERS = ("tpe", "random", "grid", "gp", "cmaes", "nsga2")
#: Pruners by name: successive halving by default; ``none`` turns pruning off.
PRUNERS = ("sha", "hyperband", "median", "none")
#: Metrics a tuner minimises (every other metric is maximised).
LOWER_IS_BETTER = frozenset({"ece"})


def require_optuna() -> Any:
    """Import Optuna, or raise naming the extra that installs it."""
    try:
        import optuna
    except ImportError:
        raise ImportError("weightlab tune needs Optuna: pip install 'weightlab[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _check_int(name: str, value: object, low: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidValueError(expected(name, f"to be an integer >= {low}", repr(value), fix))
    return value


@dataclass(frozen=True)
class TuneSpec:
    """What to tune and how.

    Attributes:
        data, data_params: the data set (as a study's).
        archs, optimizers: the cells; each (arch, optimizer) gets its own search.
        space: the search space.
        trials: the budget per cell (trials finished, earlier runs' included).
        batch: trials per stack (K).
        metrics: validation metrics to optimise (two or more: a Pareto front,
            no pruning, Optuna supports none for several objectives).
        sampler, pruner: by name (:data:`SAMPLERS`, :data:`PRUNERS`).
        epochs, batch_size, lr, model_params: training settings of every trial.
        patience: early stopping of a trial (``None``: off).
        seed: the search trials' seed (initialisation and data order) and the sampler's.
        judge_seeds: the seeds the chosen configurations are retrained on (empty:
            no judging, e.g. without a test split; one seed gives no interval).
        pareto_max: at most this many Pareto configurations are judged.

    Example:
        >>> spec = TuneSpec(metrics=("balanced_accuracy", "ece"), trials=32)
        >>> spec.directions, spec.prunes
        (['maximize', 'minimize'], False)
    """

    data: str = "digits-lt"
    data_params: dict[str, Any] = field(default_factory=dict)
    archs: tuple[str, ...] = ("mlp",)
    optimizers: tuple[str, ...] = ("adam",)
    space: SearchSpace = field(default_factory=SearchSpace)
    trials: int = 64
    batch: int = 16
    metrics: tuple[str, ...] = ("balanced_accuracy",)
    sampler: str = "tpe"
    pruner: str = "sha"
    epochs: int = 20
    batch_size: int = 64
    lr: float | None = None
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    patience: int | None = None
    seed: int = 0
    judge_seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    pareto_max: int = 3

    def __post_init__(self) -> None:
        for name in ("archs", "optimizers", "metrics", "judge_seeds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_int("trials", self.trials, 1, "Give a budget of 1 or more trials, e.g. --trials 64.")
        _check_int("batch", self.batch, 1, "Use e.g. --batch 16 trials per stack.")
        _check_int("epochs", self.epochs, 1, "Use e.g. --epochs 20.")
        _check_int("pareto_max", self.pareto_max, 1, "Judge at least one configuration.")
        if not self.metrics:
            raise InvalidValueError(
                expected(
                    "metric",
                    "to name at least one metric",
                    "none",
                    f"Use one of {names(METRIC_NAMES)}.",
                )
            )
        for m in self.metrics:
            if m not in METRIC_NAMES:
                raise InvalidValueError(
                    expected(
                        "metric",
                        f"to be among {names(METRIC_NAMES)}",
                        repr(m),
                        "Fix the name (comma-separate several for a Pareto front).",
                    )
                )
        if self.sampler not in SAMPLERS:
            raise InvalidValueError(
                expected(
                    "sampler",
                    f"to be one of {names(SAMPLERS)}",
                    repr(self.sampler),
                    "Pick one (tpe is the default).",
                )
            )
        if self.pruner not in PRUNERS:
            raise InvalidValueError(
                expected(
                    "pruner",
                    f"to be one of {names(PRUNERS)}",
                    repr(self.pruner),
                    "Pick one (sha, successive halving, is the default; none turns it off).",
                )
            )
        # the study checks archs, optimizers and sizes with its own messages
        self.study_spec()

    def study_spec(self) -> StudySpec:
        """The lab study these trials belong to (the store's ``spec`` metadata)."""
        return StudySpec(
            data=self.data,
            data_params=dict(self.data_params),
            archs=self.archs,
            optimizers=self.optimizers,
            weightings=self.space.families,
            strengths=(1.0,),
            seeds=(self.seed,),
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            model_params=dict(self.model_params),
            metric=self.metrics[0],
        )

    @property
    def directions(self) -> list[str]:
        """``"maximize"`` or ``"minimize"`` per metric."""
        return ["minimize" if m in LOWER_IS_BETTER else "maximize" for m in self.metrics]

    @property
    def prunes(self) -> bool:
        """Whether trials are pruned (one objective and a pruner)."""
        return self.pruner != "none" and len(self.metrics) == 1

    def base(self, arch: str, optimizer: str) -> TrialConfig:
        """The configuration a cell's trials start from (weighting ``none``)."""
        mp = dict(self.model_params.get(arch, {}))
        return TrialConfig(
            data=self.data,
            arch=arch,
            optimizer=optimizer,
            weighting="none",
            alpha=None,
            seed=self.seed,
            lr=self.lr,
            epochs=self.epochs,
            batch_size=self.batch_size,
            data_params=tuple(sorted(self.data_params.items())),
            model_params=tuple(sorted(mp.items())),
            patience=self.patience,
        )

    def fingerprint(self, arch: str, optimizer: str) -> str:
        """What makes a cell's search the same search (the budget and sampler do not)."""
        blob = json.dumps(
            {
                "base": self.base(arch, optimizer).to_dict(),
                "space": self.space.to_dict(),
                "metrics": list(self.metrics),
                "patience": self.patience,
                "pruner": self.pruner,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        d = asdict(self)
        d["space"] = self.space.to_dict()
        return d


def journal_path(store_path: str | Path) -> Path:
    """The Optuna journal file of a store: ``study.sqlite`` -> ``study.sqlite.optuna-journal``."""
    p = Path(store_path)
    return p.with_name(p.name + ".optuna-journal")


def _sampler(optuna: Any, spec: TuneSpec, budget: int) -> Any:
    s = spec.sampler
    seed = spec.seed
    if s == "tpe":
        startup = max(4, min(10, budget // 4))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
    if s == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s == "grid":  # the tree of families and 3 values per parameter, walked exhaustively
        import warnings

        with warnings.catch_warnings():  # "experimental": its interface may change, not its walk
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.BruteForceSampler(seed=seed)
    if s == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if s == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    try:
        import cmaes  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        raise ImportError("the cmaes sampler needs the cmaes package: pip install cmaes") from None
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


def _pruner(optuna: Any, spec: TuneSpec) -> Any:
    first = min(spec.epochs, max(2, spec.epochs // 4))  # epoch-1 scores say little
    if spec.pruner == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=3)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=first, max_resource=spec.epochs, reduction_factor=3
        )
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=first)
    return optuna.pruners.NopPruner()


def _storage(optuna: Any, store_path: str | Path | None) -> Any:
    if store_path is None:
        return optuna.storages.InMemoryStorage()
    backend = optuna.storages.journal.JournalFileBackend(str(journal_path(store_path)))
    return optuna.storages.JournalStorage(backend)


class _FixedSource(TrialSource):
    """A fixed list of stacks (the judging runs)."""

    def __init__(self, stacks: list[list[TrialConfig]]) -> None:
        self._stacks = list(stacks)
        self.total = sum(len(s) for s in stacks)

    def ask(self) -> list[TrialConfig] | None:
        return self._stacks.pop(0) if self._stacks else None

    def planned_ids(self) -> tuple[str, ...]:
        return tuple(c.trial_id for s in self._stacks for c in s)


@dataclass(frozen=True)
class Judged:
    """A configuration retrained on the judging seeds and scored on the test split.

    Attributes:
        label: the weighting as the summary shows it.
        role: ``"chosen"`` (best on validation, or on the Pareto front), ``"none"``, ``"balanced"``.
        config: its configuration (seed: the first judging seed).
        val: its validation value(s) in the search (``None`` for the references).
        test: its test metric per judging seed (the first metric).
        mean, std: over the seeds.
        gain_vs_none, gain_vs_balanced: the paired gain's estimate and 95 % interval
            ``(estimate, low, high)`` (``None`` for the references themselves).
        class_weight: the class weights by class name.
        late_class_weight: deferred re-weighting's later weights by class name, if any.
        loss: the loss, ready to paste (``"FocalLoss(gamma=1.7, class_weight=...)"``).
    """

    label: str
    role: str
    config: TrialConfig
    val: list[float] | None
    test: list[float]
    mean: float
    std: float
    gain_vs_none: tuple[float, float, float] | None
    gain_vs_balanced: tuple[float, float, float] | None
    class_weight: dict[str, float]
    late_class_weight: dict[str, float] | None
    loss: str


@dataclass(frozen=True)
class CellOutcome:
    """One cell's search and judgement.

    Attributes:
        cell: ``"arch/optimizer"``.
        study_name: its Optuna study.
        trials, done, pruned, failed: the search's trial counts (``trials``: all told).
        best_val: the best validation value(s) found.
        judged: the chosen configuration(s) and the references, judged on test.
        history: ``(trial number, value or None, state)`` per trial, for the report.
        importances: Optuna's parameter importances (fANOVA), if computable.
        pareto: the Pareto front's values (several metrics), else empty.
        engine: which engine trained the search (``"stacked: hand-batched"``, ...).
    """

    cell: str
    study_name: str
    trials: int
    done: int
    pruned: int
    failed: int
    best_val: list[float]
    judged: list[Judged]
    history: list[tuple[int, float | None, str]]
    importances: dict[str, float]
    pareto: list[list[float]]
    engine: str


@dataclass(frozen=True)
class TuneOutcome:
    """What :func:`run_tuning` did: the cells' outcomes and the work it took.

    Example:
        >>> TuneOutcome(TuneSpec(), [], 1.0, 1.0, trained_epochs=30, full_epochs=40,
        ...             class_names=("a", "b"), train_counts=[9, 1]).pruning_saving
        0.25
    """

    spec: TuneSpec
    cells: list[CellOutcome]
    seconds: float
    search_seconds: float
    trained_epochs: int
    full_epochs: int
    class_names: tuple[str, ...]
    train_counts: list[int]

    @property
    def pruning_saving(self) -> float:
        """Share of the search's epochs that pruning and early stopping saved."""
        return 1.0 - self.trained_epochs / self.full_epochs if self.full_epochs else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``weightlab tune --format json``, the store's ``"tune"`` metadata)."""
        return {
            "spec": self.spec.to_dict(),
            "seconds": self.seconds,
            "search_seconds": self.search_seconds,
            "trained_epochs": self.trained_epochs,
            "full_epochs": self.full_epochs,
            "pruning_saving": self.pruning_saving,
            "class_names": list(self.class_names),
            "train_counts": self.train_counts,
            "cells": [
                {
                    **asdict(c),
                    "judged": [{**asdict(j), "config": j.config.to_dict()} for j in c.judged],
                }
                for c in self.cells
            ],
        }


def _paste(
    config: TrialConfig, data: LabData
) -> tuple[dict[str, float], dict[str, float] | None, str]:
    """Class weights by name, the later DRW weights, and the loss as a constructor call."""
    from weightlab.losses import LOSSES

    w = resolve_weighting(config, data.train_counts)
    names_ = list(data.class_names)
    cw = {n: round(float(v), 4) for n, v in zip(names_, w.class_weight, strict=True)}
    late = None
    if w.late_class_weight is not None:
        late = {n: round(float(v), 4) for n, v in zip(names_, w.late_class_weight, strict=True)}
    cls = LOSSES.get(w.loss_name).__name__
    info = LOSSES.info(w.loss_name)
    args = []
    if info.needs_counts:
        args.append(f"counts={[int(c) for c in data.train_counts]}")
    args += [f"{k}={v:.4g}" for k, v in config.params if k != "drw_start"]
    if not np.allclose(w.class_weight, 1.0):
        args.append(f"class_weight=torch.tensor({[round(float(v), 4) for v in w.class_weight]})")
    text = f"weightlab.losses.{cls}({', '.join(args)})"
    if info.head == "cosine":
        text += (
            "  # on cosine logits in [-1, 1]: end the model with weightlab.lab.models.CosineLinear"
        )
    if late is not None:
        start = w.drw_epoch(config.epochs)
        text += (
            f"  # and from epoch {start} (0-based) on: DeferredReweighting(counts, "
            f"start_epoch={start}).apply(loss, epoch)"
        )
    return cw, late, text


def _test_values(
    results: dict[str, TrialResult], configs: list[TrialConfig], metric: str
) -> list[float]:
    return [float(results[c.trial_id].metrics.get(metric, math.nan)) for c in configs]


def _test_var(
    results: dict[str, TrialResult],
    a: list[TrialConfig],
    b: list[TrialConfig],
    data: LabData,
    metric: str,
    sign: float,
) -> float:
    """Variance of the mean paired difference over a paired bootstrap of the test rows."""
    from weightlab.lab import verdicts

    if metric not in ("balanced_accuracy", "macro_f1", "accuracy", "gmean"):
        return 0.0
    y = data.y_test.numpy()
    rows = verdicts.bootstrap_rows(len(y), 200, seed=0)
    diffs = np.zeros(len(rows))
    for ca, cb in zip(a, b, strict=True):
        pa = np.asarray(results[ca.trial_id].test_logits).argmax(1)
        pb = np.asarray(results[cb.trial_id].test_logits).argmax(1)
        c = data.num_classes
        ma = verdicts.metric_from_predictions(pa[rows], y[rows], c, metric)
        mb = verdicts.metric_from_predictions(pb[rows], y[rows], c, metric)
        diffs += sign * (ma - mb)
    return float((diffs / len(a)).var(ddof=1))


def _interval(
    results: dict[str, TrialResult],
    a: list[TrialConfig],
    b: list[TrialConfig],
    data: LabData,
    metric: str,
) -> tuple[float, float, float]:
    from weightlab.lab.verdicts import gain_interval

    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    d = sign * (
        np.array(_test_values(results, a, metric)) - np.array(_test_values(results, b, metric))
    )
    g = gain_interval(d, _test_var(results, a, b, data, metric, sign))
    return (g.estimate, g.low, g.high)


def run_tuning(
    spec: TuneSpec,
    store: ResultStore,
    *,
    store_path: str | Path | None = None,
    data: LabData | None = None,
    executor: StackExecutor | None = None,
    workers: int = 1,
    progress: Callable[[str, Progress, dict[str, Any]], None] | None = None,
    command: Sequence[str] | None = None,
) -> TuneOutcome:
    """Search each cell's weighting on validation, then judge the best on test; see the module.

    Args:
        spec: what to tune.
        store: where every trial goes (a tuning store is also a study store).
        store_path: the store's file, beside which the Optuna journal lives
            (``None``: Optuna's studies stay in memory and a rerun starts over).
        data: the loaded data (default: ``load_data(spec.data, **spec.data_params)``).
        executor: where stacks train (default: serial, or ``workers`` processes).
        workers: stacks trained at once when no executor is given.
        progress: called as ``progress(phase, Progress, best)`` after every stored
            trial: ``phase`` is ``"search"`` or ``"judge"``, ``best`` maps each cell to
            its best validation value(s) so far.
        command: the command line, kept in the store.

    Raises:
        ImportError: Optuna is not installed (the message names the extra).
        InvalidValueError: bad settings (before any training).

    Example:
        >>> from weightlab.lab.store import MemoryStore
        >>> spec = TuneSpec(trials=4, batch=4, epochs=2, judge_seeds=(1, 2),
        ...                 space=SearchSpace(families=("none", "power")))
        >>> out = run_tuning(spec, MemoryStore())
        >>> [j.role for j in out.cells[0].judged][-2:]
        ['none', 'balanced']
    """
    optuna = require_optuna()
    start = time.perf_counter()
    data = data if data is not None else load_data(spec.data, **spec.data_params)
    _check_validation(data)
    study_spec = spec.study_spec()
    cells = []
    storage = _storage(optuna, store_path)
    for arch in spec.archs:
        for opt in spec.optimizers:
            name = f"{arch}/{opt}:{spec.fingerprint(arch, opt)}"
            study = optuna.create_study(
                study_name=name,
                storage=storage,
                sampler=_sampler(optuna, spec, spec.trials),
                pruner=_pruner(optuna, spec),
                directions=spec.directions,
                load_if_exists=True,
            )
            cells.append(
                Cell(
                    study,
                    spec.base(arch, opt),
                    spec.space,
                    spec.trials,
                    spec.metrics,
                    prune=spec.prunes,
                    grid=3 if spec.sampler == "grid" else None,
                )
            )
    source = OptunaSource(cells, spec.batch, store)
    trainer = TuneTrainer(spec.metrics[0], spec.patience, extra={"tune_role": "search"})

    def best_so_far() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for cell in cells:
            try:
                out[cell.name] = (
                    cell.study.best_value
                    if len(spec.metrics) == 1
                    else [t.values for t in cell.study.best_trials][:1]
                )
            except ValueError:
                out[cell.name] = None
        return out

    def tell(phase: str) -> Callable[[Progress], None] | None:
        if progress is None:
            return None
        return lambda p: progress(phase, p, best_so_far())

    run_study(
        study_spec,
        store,
        progress=tell("search"),
        command=command,
        workers=workers,
        train_stack=trainer,
        executor=executor,
        source=source,
        data=data,
    )
    search_seconds = time.perf_counter() - start
    judge_stacks, plans = _judge_plan(spec, cells, store)
    judge = TuneTrainer(
        spec.metrics[0], spec.patience, evaluate_test=True, extra={"tune_role": "judge"}
    )
    if judge_stacks:
        run_study(
            study_spec,
            store,
            progress=tell("judge"),
            command=command,
            workers=workers,
            train_stack=judge,
            executor=executor,
            source=_FixedSource(judge_stacks),
            data=data,
        )
    outcome = _outcome(spec, cells, plans, store, data, start, search_seconds)
    store.put_meta("tune", outcome.to_dict())
    return outcome


def _check_validation(data: LabData) -> None:
    present = set(np.unique(data.y_val.numpy()).tolist())
    missing = [n for i, n in enumerate(data.class_names) if i not in present]
    if missing:
        raise InvalidValueError(
            expected(
                "val",
                "to hold every class (selection scores each class's recall)",
                f"no example of {names(missing)}",
                "Add examples of those classes to the validation data, or split "
                "stratified (weightlab.lab.data splits stratified).",
            )
        )


def _chosen_trials(cell: Cell, pareto_max: int) -> list[Any]:
    import optuna

    complete = cell.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return []
    if len(cell.metrics) == 1:
        return [cell.study.best_trial]
    front = sorted(cell.study.best_trials, key=lambda t: -t.values[0])
    return front[:pareto_max]


def _judge_plan(
    spec: TuneSpec, cells: list[Cell], store: ResultStore
) -> tuple[list[list[TrialConfig]], dict[str, list[tuple[str, Any, TrialConfig]]]]:
    """The judging configurations: per cell the chosen ones and the references, per seed."""
    plans: dict[str, list[tuple[str, Any, TrialConfig]]] = {}
    configs: list[TrialConfig] = []
    for cell in cells:
        chosen = _chosen_trials(cell, spec.pareto_max) if spec.judge_seeds else []
        entries: list[tuple[str, Any, TrialConfig]] = []
        for trial in chosen:
            tid = trial.user_attrs.get(TRIAL_ID)
            stored = store.get(tid) if tid is not None else None  # None: not finished
            if stored is None:
                continue
            entries.append(("chosen", trial, stored.config))
        if not entries:
            plans[cell.name] = []
            continue
        lead = entries[0][2]
        for ref in ("none", "balanced"):
            entries.append(
                (
                    ref,
                    None,
                    replace(
                        lead,
                        weighting=ref,
                        alpha=None,
                        params=(),
                        model_params=cell.base.model_params,
                    ),
                )
            )
        plans[cell.name] = entries
        for _, _, cfg in entries:
            configs += [replace(cfg, seed=s) for s in spec.judge_seeds]
    unique = list(dict.fromkeys(configs))
    return group_stacks(unique), plans


def _outcome(
    spec: TuneSpec,
    cells: list[Cell],
    plans: dict[str, list[tuple[str, Any, TrialConfig]]],
    store: ResultStore,
    data: LabData,
    start: float,
    search_seconds: float,
) -> TuneOutcome:
    import optuna

    metric = spec.metrics[0]
    out = []
    trained = full = 0
    for cell in cells:
        trials = cell.study.get_trials(deepcopy=False)
        told = [
            t
            for t in trials
            if t.state != optuna.trial.TrialState.RUNNING
            and not t.user_attrs.get("weightlab:interrupted")
        ]
        states = [t.state.name.lower() for t in told]
        engines = set()
        for t in told:
            tid = t.user_attrs.get(TRIAL_ID)
            res = store.get(tid) if tid else None
            if res is not None:
                trained += len(res.val_metric)
                full += spec.epochs
                engines.add(str(res.extra.get("engine", "")))
        results: dict[str, TrialResult] = {}
        judged: list[Judged] = []
        entries = plans.get(cell.name, [])
        per_seed = {
            role_cfg[2].trial_id: [replace(role_cfg[2], seed=s) for s in spec.judge_seeds]
            for role_cfg in entries
        }
        for cfgs in per_seed.values():
            for c in cfgs:
                got = store.get(c.trial_id)
                if got is not None:
                    results[c.trial_id] = got
        ok = {
            tid: cfgs
            for tid, cfgs in per_seed.items()
            if cfgs
            and all(c.trial_id in results and results[c.trial_id].status == "done" for c in cfgs)
        }
        refs = {role: cfg for role, _, cfg in entries if role != "chosen"}
        for role, trial, cfg in entries:
            if cfg.trial_id not in ok:
                continue
            seeds = ok[cfg.trial_id]
            test = _test_values(results, seeds, metric)
            gains = {}
            for ref in ("none", "balanced"):
                rc = refs.get(ref)
                if role == "chosen" and rc is not None and rc.trial_id in ok and rc != cfg:
                    gains[ref] = _interval(results, seeds, ok[rc.trial_id], data, metric)
            cw, late, paste = _paste(cfg, data)
            judged.append(
                Judged(
                    label=weighting_label(cfg),
                    role=role,
                    config=cfg,
                    val=None if trial is None else list(trial.values),
                    test=test,
                    mean=float(np.mean(test)),
                    std=float(np.std(test, ddof=1)) if len(test) > 1 else math.nan,
                    gain_vs_none=gains.get("none"),
                    gain_vs_balanced=gains.get("balanced"),
                    class_weight=cw,
                    late_class_weight=late,
                    loss=paste,
                )
            )
        out.append(
            CellOutcome(
                cell=cell.name,
                study_name=cell.study.study_name,
                trials=len(told),
                done=states.count("complete"),
                pruned=states.count("pruned"),
                failed=states.count("fail"),
                best_val=[v for t in _chosen_trials(cell, 1) for v in t.values],
                judged=judged,
                history=[
                    (t.number, t.values[0] if t.values else None, t.state.name.lower())
                    for t in told
                ],
                importances=_importances(cell),
                pareto=[list(t.values) for t in cell.study.best_trials]
                if len(spec.metrics) > 1
                else [],
                engine=", ".join(sorted(e for e in engines if e)),
            )
        )
    return TuneOutcome(
        spec=spec,
        cells=out,
        seconds=time.perf_counter() - start,
        search_seconds=search_seconds,
        trained_epochs=trained,
        full_epochs=full,
        class_names=tuple(data.class_names),
        train_counts=[int(c) for c in data.train_counts],
    )


def _importances(cell: Cell) -> dict[str, float]:
    """Optuna's parameter importances of the first objective (empty when not computable)."""
    import warnings

    import optuna

    try:
        target = None if len(cell.metrics) == 1 else (lambda t: t.values[0])
        with warnings.catch_warnings():  # "few trials in a regime": the report says how many
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(cell.study, target=target)
    except (ValueError, RuntimeError, ZeroDivisionError, WeightlabError):
        return {}
    return {k: float(v) for k, v in imp.items()}
