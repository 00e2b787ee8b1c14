"""A study: many trials, their stacks, running them resumably, and what they say.

A :class:`StudySpec` names the grid (data x architectures x optimizers x
weightings x strengths x seeds, plus training settings); :meth:`StudySpec.trials`
expands it into :class:`~weightlab.lab.trial.TrialConfig` objects.
:func:`run_study` groups them into stacks (trials sharing a
:attr:`~weightlab.lab.trial.TrialConfig.stack_key` train as one vectorized
model), skips every trial the store already holds, trains the rest with the
engine and puts each result in the store as soon as it exists. A trial whose
training diverges (NaN or infinite loss) is stored as ``"failed"`` with its
reason and the study goes on. :func:`summarize` reads results back and answers
the lab's question: does the same weight act the same in every network?

Weightings: ``"none"`` (every class weight 1), any scheme of
:data:`weightlab.weights.SCHEMES` (``"balanced"``, ``"inverse"``, ...), and
``"power"``, which is swept over ``strengths``: weight of class ``c`` is
proportional to :math:`n_c^{-alpha}` (``alpha=0`` is unweighted,
``alpha=1`` is inverse frequency).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tomllib

from weightlab.errors import InvalidValueError, expected, names
from weightlab.lab.metrics import HIGHER_IS_BETTER, METRIC_NAMES, compute_metrics
from weightlab.lab.store import ResultStore
from weightlab.lab.trial import TrialConfig, TrialResult
from weightlab.lab.weightings import (
    trial_class_weights,
    trial_loss_fn,
    weighting_model_params,
    weighting_names,
)

__all__ = [
    "OPTIMIZERS",
    "PRESETS",
    "CellSummary",
    "EngineTrainer",
    "Progress",
    "StudyOutcome",
    "StudySpec",
    "Summary",
    "WeightingStats",
    "group_stacks",
    "run_study",
    "summarize",
    "trial_class_weights",
    "weighting_label",
]

#: Optimizers the lab trains with.
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
#: Architectures the lab builds (see :mod:`weightlab.lab.models`).
ARCHS = ("mlp", "cnn", "gru", "lstm")

#: A function that trains one stack: ``(data, configs, class_weights) -> results``,
#: one result per config, in order (the engine's ``train_stack``).
TrainStack = Callable[[Any, Sequence[TrialConfig], npt.NDArray[np.float64]], list[TrialResult]]


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

    def __post_init__(self) -> None:
        # Accept lists (from TOML or the CLI) and normalise them to tuples.
        for name in ("archs", "optimizers", "weightings", "strengths", "seeds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "strengths", tuple(float(a) for a in self.strengths))
        self.validate()

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> StudySpec:
        """Return the preset ``name`` (``"quick"`` or ``"full"``) with ``overrides`` applied.

        Raises:
            InvalidValueError: unknown preset name or a bad override.

        Example:
            >>> StudySpec.preset("quick").num_trials
            126
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
        _check_names("archs", self.archs, ARCHS)
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
        if self.metric not in METRIC_NAMES:
            raise InvalidValueError(
                expected("metric", f"to be one of {names(METRIC_NAMES)}", repr(self.metric),
                         "Pick one of those.")
            )
        if not isinstance(self.model_params, dict) or any(
            a not in ARCHS or not isinstance(p, dict) for a, p in self.model_params.items()
        ):
            raise InvalidValueError(
                expected("model_params", f"to map architectures ({names(ARCHS)}) to option "
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
        data_params = tuple(sorted(self.data_params.items()))
        out = []
        for arch in self.archs:
            for opt in self.optimizers:
                for w in self.weightings:
                    # the weighting's model options (ldam: the cosine head), then the user's
                    options = weighting_model_params(w) | self.model_params.get(arch, {})
                    model_params = tuple(sorted(options.items()))
                    alphas: Iterable[float | None] = self.strengths if w == "power" else [None]
                    for alpha in alphas:
                        for seed in self.seeds:
                            out.append(
                                TrialConfig(
                                    data=self.data,
                                    arch=arch,
                                    optimizer=opt,
                                    weighting=w,
                                    alpha=alpha,
                                    seed=seed,
                                    lr=self.lr,
                                    epochs=self.epochs,
                                    batch_size=self.batch_size,
                                    data_params=data_params,
                                    model_params=model_params,
                                )
                            )
        return out

    @property
    def num_trials(self) -> int:
        """How many trials the grid holds."""
        per_seed = sum(len(self.strengths) if w == "power" else 1 for w in self.weightings)
        return len(self.archs) * len(self.optimizers) * per_seed * len(self.seeds)

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


#: The built-in studies. ``quick`` is the default: 90 trials, a few minutes on 2 CPU cores.
PRESETS: dict[str, StudySpec] = {}
PRESETS_RAW: dict[str, dict[str, Any]] = {
    # The GRU at hidden 32 trains 3x faster than at its default 64 on 2 CPU cores.
    "quick": {"model_params": {"gru": {"hidden": 32}}},
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
        "epochs": 30,
    },
}


def _presets() -> dict[str, StudySpec]:
    if not PRESETS:
        for name, kw in PRESETS_RAW.items():
            PRESETS[name] = StudySpec(**kw)
    return PRESETS


def weighting_label(config: TrialConfig) -> str:
    """The weighting as the summary shows it: ``"balanced"``, ``"power(a=0.5)"``.

    Example:
        >>> weighting_label(TrialConfig("d", "mlp", "sgd", "power", 0.5, 0))
        'power(a=0.5)'
    """
    if config.weighting == "power" and config.alpha is not None:
        return f"power(a={config.alpha:g})"
    return config.weighting


def group_stacks(configs: Iterable[TrialConfig]) -> list[list[TrialConfig]]:
    """Group configs by :attr:`TrialConfig.stack_key`, keeping first-seen order."""
    stacks: dict[str, list[TrialConfig]] = {}
    for c in configs:
        stacks.setdefault(c.stack_key, []).append(c)
    return list(stacks.values())


@dataclass(frozen=True)
class Progress:
    """What a progress callback is told after each stored trial (and once at the start).

    Attributes:
        done: trials finished so far, including those found in the store.
        total: trials in the study.
        skipped: trials found finished in the store (not run again).
        failed: trials stored as failed so far (this run and earlier ones).
        result: the trial just stored; ``None`` at the start.
        elapsed: seconds since this run started.
    """

    done: int
    total: int
    skipped: int
    failed: int
    result: TrialResult | None
    elapsed: float


@dataclass(frozen=True)
class StudyOutcome:
    """What :func:`run_study` did: ``ran`` now, ``skipped`` as stored, ``failed`` in all."""

    total: int
    ran: int
    skipped: int
    failed: int
    seconds: float
    trial_ids: tuple[str, ...]


def _non_finite_reason(result: TrialResult) -> str:
    for epoch, v in enumerate(result.train_loss, start=1):
        if not math.isfinite(v):
            return f"non-finite training loss ({v}) at epoch {epoch}"
    if any(not math.isfinite(v) for row in result.test_logits for v in row):
        return "non-finite test logits"
    return ""


def _finish(result: TrialResult, data: Any) -> TrialResult:
    """Turn a diverged 'done' into 'failed', and fill test metrics from the logits if missing."""
    if result.status != "done":
        return result
    reason = _non_finite_reason(result)
    if reason:
        return replace(result, status="failed", reason=reason)
    if not result.metrics and result.test_logits:
        metrics, per_class = compute_metrics(
            np.asarray(result.test_logits), data.y_test, data.train_counts
        )
        return replace(result, metrics=metrics, per_class=per_class)
    return result


def data_summary(data: Any) -> dict[str, Any]:
    """What the store keeps about the data: name, classes, split sizes, training counts."""
    return {
        "name": data.name,
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "input_shape": list(data.input_shape),
        "train_counts": [int(c) for c in data.train_counts],
        "n_train": int(data.y_train.shape[0]),
        "n_val": int(data.y_val.shape[0]),
        "n_test": int(data.y_test.shape[0]),
    }


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a study's numbers depend on."""
    import sklearn
    import torch

    import weightlab

    return {
        "python": platform.python_version(),
        "weightlab": weightlab.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
    }


@dataclass(frozen=True)
class EngineTrainer:
    """The vectorized engine as a :data:`TrainStack` (picklable, for worker processes).

    Each trial's loss comes from its weighting (:func:`weightlab.lab.weightings.trial_loss_fn`:
    cross-entropy with the trial's class weights, or a literature loss).

    Attributes:
        metric: the study's metric, tracked per epoch if the engine can (else
            balanced accuracy).
        diagnostics: record gradient diagnostics at initialisation and at the end.
    """

    metric: str = "balanced_accuracy"
    diagnostics: bool = True

    def __call__(
        self, data: Any, configs: Sequence[TrialConfig], weights: npt.NDArray[np.float64]
    ) -> list[TrialResult]:
        """Train one stack with the engine."""
        from weightlab.lab.engine import VAL_METRICS, train_stack, weighted_cross_entropy

        counts = data.train_counts
        loss_fns = [trial_loss_fn(c, counts) or weighted_cross_entropy for c in configs]
        return train_stack(
            data,
            configs,
            weights,
            loss_fn=loss_fns,
            val_metric=self.metric if self.metric in VAL_METRICS else "balanced_accuracy",
            diagnostics=self.diagnostics,
        )


def _train_in_worker(
    train: TrainStack,
    data: Any,
    configs: list[TrialConfig],
    weights: npt.NDArray[np.float64],
    threads: int,
) -> list[TrialResult]:
    """Run one stack in a worker process, with its share of the CPU threads."""
    import torch

    torch.set_num_threads(threads)
    return train(data, configs, weights)


def run_study(
    spec: StudySpec,
    store: ResultStore,
    *,
    progress: Callable[[Progress], None] | None = None,
    command: Sequence[str] | None = None,
    workers: int = 1,
    train_stack: TrainStack | None = None,
    diagnostics: bool = True,
) -> StudyOutcome:
    """Run every trial of ``spec`` the store does not hold yet, storing each as it finishes.

    Trials already in the store (done or failed) are skipped; trials marked
    running by a run that was stopped are run again. Each stack is marked
    running, trained by the engine, and its results are put one by one (each
    put is atomic), so stopping the process at any time loses no stored trial.
    Only this process writes to the store, also with ``workers > 1``.

    Args:
        spec: the study.
        store: where results go (and where finished trials are looked up).
        progress: called with a :class:`Progress` once at the start and after
            every stored trial.
        command: the command line that started the study, kept as metadata.
        workers: stacks trained at once, each in its own process (``1``: all
            in this process, one after the other).
        train_stack: the function that trains one stack, ``(data, configs,
            class_weights) -> results`` (default: the vectorized engine,
            :func:`weightlab.lab.engine.train_stack`, tracking ``spec.metric``
            per epoch when it is one of the engine's validation metrics). With
            ``workers > 1`` it must be picklable.
        diagnostics: with the default engine, record each trial's gradient
            diagnostics at initialisation and at the end of training.

    Returns:
        A :class:`StudyOutcome` with the counts and the ids of the study's trials.

    Raises:
        InvalidValueError: a bad ``workers``, or data the loader refuses.
    """
    from weightlab.lab.data import load_data

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidValueError(
            expected("workers", "to be an integer >= 1", repr(workers), "Use 1 or more.")
        )
    start = time.perf_counter()
    train = train_stack or EngineTrainer(spec.metric, diagnostics)
    data = load_data(spec.data, **spec.data_params)
    configs = spec.trials()
    ids = tuple(c.trial_id for c in configs)
    store.put_meta("spec", spec.to_dict())
    store.put_meta("command", list(command) if command is not None else None)
    store.put_meta("versions", versions())
    store.put_meta("data", data_summary(data))

    finished = store.finished_ids()
    skipped = sum(1 for i in ids if i in finished)
    failed = sum(1 for i in ids if i in finished and _status(store, i) == "failed")
    done = skipped
    if progress:
        progress(Progress(done, len(configs), skipped, failed, None, 0.0))
    counts = data.train_counts
    jobs = []
    for stack in group_stacks(configs):
        todo = [c for c in stack if c.trial_id not in finished]
        if todo:
            jobs.append((todo, np.stack([trial_class_weights(c, counts) for c in todo])))

    def store_stack(todo: list[TrialConfig], results: list[TrialResult]) -> None:
        nonlocal done, failed
        if len(results) != len(todo):
            raise RuntimeError(
                f"the engine returned {len(results)} results for a stack of {len(todo)} trials"
            )
        for cfg, res in zip(todo, results, strict=True):
            if res.config.trial_id != cfg.trial_id:
                raise RuntimeError("the engine returned results out of order")
            res = _finish(res, data)
            store.put(res)
            done += 1
            failed += res.status == "failed"
            if progress:
                elapsed = time.perf_counter() - start
                progress(Progress(done, len(configs), skipped, failed, res, elapsed))

    if workers == 1 or len(jobs) <= 1:
        for todo, weights in jobs:
            store.mark_running(todo)
            store_stack(todo, train(data, todo, weights))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, (os.cpu_count() or 1) // workers)
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {}
            for todo, weights in jobs:
                store.mark_running(todo)
                fut = pool.submit(_train_in_worker, train, data, todo, weights, threads)
                futures[fut] = todo
            for fut in as_completed(futures):
                store_stack(futures[fut], fut.result())
    return StudyOutcome(
        total=len(configs),
        ran=done - skipped,
        skipped=skipped,
        failed=failed,
        seconds=time.perf_counter() - start,
        trial_ids=ids,
    )


def _status(store: ResultStore, trial_id: str) -> str:
    r = store.get(trial_id)
    return "" if r is None else r.status


# -- summary ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightingStats:
    """One weighting in one (arch, optimizer) cell.

    Attributes:
        weighting: its label (``"none"``, ``"balanced"``, ``"power(a=0.5)"``).
        mean: mean of the metric over the seeds that finished.
        std: sample standard deviation over those seeds (0 for one seed).
        n: seeds that finished.
        failed: seeds that failed (diverged).
        gain: ``mean`` minus the ``"none"`` mean, signed so that positive is
            better (``None`` when the cell has no finished ``"none"``).
    """

    weighting: str
    mean: float
    std: float
    n: int
    failed: int
    gain: float | None


@dataclass(frozen=True)
class CellSummary:
    """The weightings of one (data, arch, optimizer) cell, best first."""

    data: str
    arch: str
    optimizer: str
    ranking: tuple[WeightingStats, ...]

    @property
    def best(self) -> WeightingStats | None:
        """The best weighting that finished at least once."""
        return next((w for w in self.ranking if w.n > 0), None)


@dataclass(frozen=True)
class Summary:
    """Per-cell weighting rankings and the plain-language answer computed from them."""

    metric: str
    higher_is_better: bool
    cells: tuple[CellSummary, ...]
    answer: str
    n_done: int
    n_failed: int

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows (one per cell and weighting, best first), for tables and CSV."""
        out = []
        for cell in self.cells:
            for rank, w in enumerate(cell.ranking, start=1):
                out.append(
                    {
                        "data": cell.data,
                        "arch": cell.arch,
                        "optimizer": cell.optimizer,
                        "rank": rank if w.n else None,
                        "weighting": w.weighting,
                        "mean": w.mean if w.n else None,
                        "std": w.std if w.n else None,
                        "n": w.n,
                        "failed": w.failed,
                        "gain_vs_none": w.gain,
                    }
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (no NaN: missing numbers are ``None``)."""
        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "n_done": self.n_done,
            "n_failed": self.n_failed,
            "answer": self.answer,
            "rows": self.rows(),
        }


def summarize(results: Iterable[TrialResult], metric: str = "balanced_accuracy") -> Summary:
    """Rank the weightings of every (arch, optimizer) by ``metric`` and answer the question.

    Failed trials count in ``failed`` and not in the means. The answer compares
    across cells which weighting wins and how much it gains over ``"none"``,
    and which weighting's effect varies the most between cells, against the
    typical seed-to-seed standard deviation.

    Raises:
        InvalidValueError: if ``metric`` is not a metric the lab computes.
    """
    if metric not in HIGHER_IS_BETTER:
        raise InvalidValueError(
            expected("metric", f"to be one of {names(METRIC_NAMES)}", repr(metric),
                     "Pick one of those.")
        )
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    values: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    fails: dict[tuple[str, str, str], dict[str, int]] = {}
    n_done = n_failed = 0
    for r in results:
        key = (r.config.data, r.config.arch, r.config.optimizer)
        label = weighting_label(r.config)
        values.setdefault(key, {}).setdefault(label, [])
        fails.setdefault(key, {}).setdefault(label, 0)
        if r.status == "done" and metric in r.metrics and math.isfinite(r.metrics[metric]):
            values[key][label].append(float(r.metrics[metric]))
            n_done += 1
        else:
            fails[key][label] += 1
            n_failed += 1
    cells = []
    for key, by_w in values.items():
        none = by_w.get("none", [])
        none_mean = statistics.fmean(none) if none else None
        stats = []
        for label, vs in by_w.items():
            mean = statistics.fmean(vs) if vs else math.nan
            std = statistics.stdev(vs) if len(vs) > 1 else 0.0
            gain = sign * (mean - none_mean) if vs and none_mean is not None else None
            stats.append(WeightingStats(label, mean, std, len(vs), fails[key][label], gain))
        stats.sort(key=lambda w: (w.n == 0, -sign * w.mean if w.n else 0.0, w.weighting))
        cells.append(CellSummary(*key, ranking=tuple(stats)))
    cells.sort(key=lambda c: (c.data, _order(c.arch, ARCHS), _order(c.optimizer, OPTIMIZERS)))
    answer = _answer(cells, metric, n_failed)
    return Summary(metric, sign > 0, tuple(cells), answer, n_done, n_failed)


def _order(value: str, known: Sequence[str]) -> int:
    return known.index(value) if value in known else len(known)


def _fmt(x: float) -> str:
    return f"{x:+.3f}"


def _answer(cells: Sequence[CellSummary], metric: str, n_failed: int) -> str:
    """Say, from the numbers, whether the weighting acts the same in every cell."""
    scored = [c for c in cells if c.best is not None]
    if not scored:
        return "No trial finished, so there is nothing to compare."
    name = {c: f"{c.arch}/{c.optimizer}" for c in scored}
    if len(scored) > 1 and len({c.data for c in scored}) > 1:
        name = {c: f"{c.data}:{c.arch}/{c.optimizer}" for c in scored}
    stds = [w.std for c in scored for w in c.ranking if w.n > 1]
    noise = statistics.median(stds) if stds else 0.0
    noise_txt = (
        f"against a typical seed-to-seed std of {noise:.3f}"
        if stds
        else "(one seed per trial, so no seed-to-seed noise to compare with)"
    )
    lines = []
    winners: dict[str, list[str]] = {}
    for c in scored:
        assert c.best is not None
        winners.setdefault(c.best.weighting, []).append(name[c])
    gains = [(c, c.best.gain) for c in scored if c.best is not None and c.best.gain is not None]
    if len(scored) == 1:
        c = scored[0]
        assert c.best is not None
        lines.append(
            f"Only one architecture/optimizer pair ({name[c]}) was run, so there is nothing "
            f"to compare across; there '{c.best.weighting}' ranks first by {metric}"
            + (f" ({_fmt(c.best.gain)} over 'none')." if c.best.gain is not None else ".")
        )
    else:
        spread = (max(g for _, g in gains) - min(g for _, g in gains)) if gains else 0.0
        same = len(winners) == 1 and spread <= 2 * noise
        verdict = "Roughly yes" if same else "No"
        if len(winners) == 1:
            lines.append(
                f"{verdict}: '{next(iter(winners))}' ranks first by {metric} in all "
                f"{len(scored)} architecture/optimizer pairs"
                + ("." if same else ", but its gain differs.")
            )
        else:
            parts = [
                f"'{w}' in {len(where)} ({', '.join(where[:4])}{', ...' if len(where) > 4 else ''})"
                for w, where in sorted(winners.items(), key=lambda kv: -len(kv[1]))
            ]
            lines.append(
                f"{verdict}: the best weighting by {metric} depends on the network: "
                + "; ".join(parts)
                + "."
            )
        if gains:
            lo = min(gains, key=lambda cg: cg[1])
            hi = max(gains, key=lambda cg: cg[1])
            lines.append(
                f"The best weighting's gain over 'none' ranges from {_fmt(lo[1])} "
                f"({name[lo[0]]}) to {_fmt(hi[1])} ({name[hi[0]]}), a spread of "
                f"{spread:.3f} {noise_txt}."
            )
        lines.extend(_same_weight_lines(scored, name, noise))
    if n_failed:
        lines.append(f"{n_failed} trial(s) failed (diverged) and are left out of the means.")
    return " ".join(lines)


def _same_weight_lines(
    cells: Sequence[CellSummary], name: dict[CellSummary, str], noise: float
) -> list[str]:
    """The weighting (other than 'none') whose gain varies most between cells."""
    per_w: dict[str, list[tuple[CellSummary, float]]] = {}
    for c in cells:
        for w in c.ranking:
            if w.weighting != "none" and w.n and w.gain is not None:
                per_w.setdefault(w.weighting, []).append((c, w.gain))
    best_w, best_spread, lo, hi = None, -1.0, None, None
    for label, gs in per_w.items():
        if len(gs) < 2:
            continue
        a = min(gs, key=lambda cg: cg[1])
        b = max(gs, key=lambda cg: cg[1])
        if b[1] - a[1] > best_spread:
            best_w, best_spread, lo, hi = label, b[1] - a[1], a, b
    if best_w is None or lo is None or hi is None:
        return []
    if noise > 0:
        size = "more than" if best_spread > 2 * noise else "within"
        judged = f" ({size} twice the seed noise)"
    else:
        judged = " (with one seed, run more seeds to judge this against noise)"
    return [
        f"The same weight acts differently: '{best_w}' changes the metric by {_fmt(hi[1])} "
        f"with {name[hi[0]]} but by {_fmt(lo[1])} with {name[lo[0]]}{judged}."
    ]


_presets()
