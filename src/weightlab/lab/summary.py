r"""What a study's results say: per-cell rankings of the weightings and a plain answer.

:func:`summarize` reads results (from the store) and, for every (data, arch,
optimizer) cell:

* groups weightings that train the same model (:func:`alias_groups`: the same
  loss on the data's classes, to :data:`ALIAS_TOLERANCE`) into one entry;
* ranks the entries on the **validation** split (``extra["val_metrics"][metric]``
  at the checkpoint epoch when the engine stored it, else the best value of the
  stored per-epoch validation curve) and reports each on the **test** split;
* gives each entry's gain over ``"none"`` as a paired difference per seed with
  a 95 % interval that holds seed noise and test-row noise
  (:func:`weightlab.lab.verdicts.gain_interval`), its probability of being the
  best of its cell (:func:`weightlab.lab.verdicts.prob_best`) and a mark against
  the chosen entry (``"tie"``, ``"worse"``, ``"better on test"``);
* flags the cell *undertrained* when its unweighted model is near chance
  (:func:`weightlab.lab.verdicts.is_near_chance`): such cells are not evidence.

The answer then tests whether a weighting's gain depends on the network (the
weighting x network interaction: a permutation test of the paired gains across
the trained cells, Holm-adjusted over weightings, and the interval of the
largest difference of gains between two networks), and says "yes", "no" or
"inconclusive" from it, with the numbers beside every sentence.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from weightlab.errors import InvalidValueError, expected, names
from weightlab.lab import verdicts as vd
from weightlab.lab.architectures import ARCHITECTURES
from weightlab.lab.engine import VAL_METRICS
from weightlab.lab.metrics import HIGHER_IS_BETTER, METRIC_NAMES, tail_classes
from weightlab.lab.optim import OPTIMIZERS
from weightlab.lab.trial import TrialConfig, TrialResult
from weightlab.lab.weightings import weighting_label

__all__ = [
    "ALIAS_TOLERANCE",
    "RateChoice",
    "CellSummary",
    "Interaction",
    "Summary",
    "WeightingStats",
    "alias_groups",
    "selection_score",
    "choose_learning_rates",
    "summarize",
]

#: Two weightings are one entry when their losses agree to this relative tolerance
#: (value and gradient) on probe batches of the data's classes.
ALIAS_TOLERANCE = 0.01
#: Test-row bootstrap replicates behind each interval's test-noise term.
N_BOOT = 400
#: Significance level of the interaction test (after Holm's adjustment).
ALPHA = 0.05


@dataclass(frozen=True)
class WeightingStats:
    """One entry (a weighting, or several that coincide) in one (arch, optimizer) cell.

    Attributes:
        weighting: its label (``"none"``, ``"power(a=0.5)"``; aliases joined by ``" = "``).
        mean: mean of the test metric over the seeds that finished.
        std: sample standard deviation over those seeds (0 for one seed).
        n: seeds that finished.
        failed: seeds that failed (diverged).
        gain: mean paired gain over ``"none"`` on test, signed so that positive is
            better (``None`` when the cell has no finished ``"none"`` seed in common).
        gain_low, gain_high: its 95 % interval (``None`` when it cannot be computed).
        val_mean: mean validation score the ranking uses (``None`` without one).
        p_best: probability of being the cell's best on validation over seed resamples.
        mark: ``"chosen"`` (ranked first), ``"tie"`` (its test difference to the chosen
            entry has an interval covering 0), ``"worse"``, ``"better on test"``, or ``""``.
        names: the weighting labels of the entry (one unless aliases coincide).
        pruned: trials of the entry with a status other than done and failed (not used).
        near_chance: its own mean test balanced accuracy is near chance (a collapse).
    """

    weighting: str
    mean: float
    std: float
    n: int
    failed: int
    gain: float | None
    gain_low: float | None = None
    gain_high: float | None = None
    val_mean: float | None = None
    p_best: float | None = None
    mark: str = ""
    names: tuple[str, ...] = ()
    pruned: int = 0
    near_chance: bool = False


@dataclass(frozen=True)
class CellSummary:
    """The entries of one (data, arch, optimizer) cell, ranked on validation (best first).

    Attributes:
        undertrained: the unweighted model is near chance (see
            :func:`weightlab.lab.verdicts.is_near_chance`); not used as evidence.
        none_balanced_accuracy: the unweighted model's mean test balanced accuracy.
        num_classes: classes of the cell's data (``None`` when unknown).
    """

    data: str
    arch: str
    optimizer: str
    ranking: tuple[WeightingStats, ...]
    undertrained: bool = False
    none_balanced_accuracy: float | None = None
    num_classes: int | None = None

    @property
    def best(self) -> WeightingStats | None:
        """The entry ranked first (on validation) that finished at least once."""
        return next((w for w in self.ranking if w.n > 0), None)


@dataclass(frozen=True)
class Interaction:
    """The weighting x network interaction test of one weighting over the trained cells.

    Attributes:
        weighting: the entry's label.
        cells: the cells (``"arch/optimizer"``) it was measured in.
        p_value: permutation test of equal mean gains in every cell.
        p_holm: ``p_value`` adjusted over the weightings tested (Holm).
        high, low: the cells with the largest and smallest mean gain.
        gain_high, gain_low: their gain intervals.
        difference: the interval of ``gain(high) - gain(low)``.
        seeds_needed: seeds per cell that would resolve ``difference.estimate``
            (``None`` when seeds cannot, or it is resolved).
    """

    weighting: str
    cells: tuple[str, ...]
    p_value: float
    p_holm: float
    high: str
    low: str
    gain_high: vd.GainInterval
    gain_low: vd.GainInterval
    difference: vd.GainInterval
    seeds_needed: int | None


@dataclass(frozen=True)
class Summary:
    """Per-cell rankings, the interaction tests and the plain-language answer computed from them."""

    metric: str
    higher_is_better: bool
    cells: tuple[CellSummary, ...]
    answer: str
    n_done: int
    n_failed: int
    n_pruned: int = 0
    verdict: str = ""
    selection: str = ""
    interval: str = ""
    interactions: tuple[Interaction, ...] = ()
    class_names: tuple[str, ...] = ()

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows (one per cell and entry, best first), for tables and CSV."""
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

    def detail_rows(self) -> list[dict[str, Any]]:
        """:meth:`rows` with the interval, validation score, P(best), mark and cell flags."""
        out = []
        i = 0
        rows = self.rows()
        for cell in self.cells:
            for w in cell.ranking:
                out.append({**rows[i], "gain_low": w.gain_low, "gain_high": w.gain_high,
                            "val_mean": w.val_mean, "p_best": w.p_best, "mark": w.mark,
                            "names": list(w.names), "pruned": w.pruned,
                            "undertrained": cell.undertrained})  # fmt: skip
                i += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (no NaN: missing numbers are ``None``)."""
        out: dict[str, Any] = _no_nan({
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "n_done": self.n_done,
            "n_failed": self.n_failed,
            "n_pruned": self.n_pruned,
            "answer": self.answer,
            "verdict": self.verdict,
            "selection": self.selection,
            "interval": self.interval,
            "rows": self.rows(),
            "details": self.detail_rows(),
        })  # fmt: skip
        return out


def _no_nan(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_no_nan(v) for v in x]
    return x


# -- what the store gives per trial ----------------------------------------------------------


def selection_score(result: TrialResult, metric: str) -> tuple[float | None, bool]:
    """The validation score a trial is ranked by, and whether it is ``metric`` itself.

    ``result.extra["val_metrics"][metric]`` (validation metrics at the checkpoint
    epoch) when stored; else ``max(result.val_metric)``, the best epoch of the
    stored validation curve (the study's tracked metric, higher is better);
    ``None`` without either.

    Example:
        >>> cfg = TrialConfig("d", "mlp", "sgd", "none", None, 0)
        >>> selection_score(TrialResult(cfg, "done", val_metric=[0.2, 0.5, 0.4]), "macro_f1")
        (0.5, False)
        >>> selection_score(TrialResult(cfg, "done", val_metric=[0.2, 0.5]), "ece")
        (None, False)
        >>> r = TrialResult(cfg, "done", extra={"val_metrics": {"macro_f1": 0.45}})
        >>> selection_score(r, "macro_f1")
        (0.45, True)
    """
    vm = result.extra.get("val_metrics") if isinstance(result.extra, dict) else None
    if isinstance(vm, dict) and metric in vm:
        v = vm[metric]
        if isinstance(v, (int, float)) and math.isfinite(v):
            return float(v), True
    if metric not in VAL_METRICS:  # the stored curve tracks another metric
        return None, False
    curve = [v for v in result.val_metric if isinstance(v, (int, float)) and math.isfinite(v)]
    return (float(max(curve)), False) if curve else (None, False)


@dataclass(frozen=True)
class RateChoice:
    """The learning rate a weighting of a cell is compared at, chosen on validation.

    Attributes:
        cell: ``(data, arch, optimizer)``.
        weighting: the weighting's label.
        chosen: the rate with the best mean validation score over seeds.
        scores: the mean validation score at each rate of the grid.
        collapsed: rates of the grid where its test balanced accuracy is near
            chance (a step-size collapse, not a weighting's effect).
    """

    cell: tuple[str, str, str]
    weighting: str
    chosen: float | None
    scores: dict[float | None, float]
    collapsed: tuple[float | None, ...]


def choose_learning_rates(
    results: Sequence[TrialResult], metric: str, num_classes: Callable[[TrialResult], int | None]
) -> tuple[list[TrialResult], list[RateChoice]]:
    """Keep, per (cell, weighting), the trials at the learning rate best on validation.

    A study with a learning-rate grid (``StudySpec.lrs``) trains every
    weighting at each rate; each weighting is then compared at its own best
    rate (mean validation score over seeds, the selection rule of the
    summary), so a weighting that collapses at one untuned step size is not
    judged by it. Trials of a single rate pass through.

    Example:
        >>> mk = lambda lr, v: TrialResult(TrialConfig("d", "mlp", "sgd", "none", None, 0, lr=lr),
        ...                                "done", val_metric=[v])
        >>> kept, choices = choose_learning_rates([mk(0.01, 0.8), mk(0.1, 0.3)],
        ...                                       "balanced_accuracy", lambda r: None)
        >>> [r.config.lr for r in kept], choices[0].chosen
        ([0.01], 0.01)
    """
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    groups: dict[tuple[tuple[str, str, str], str], dict[float | None, list[TrialResult]]] = {}
    for r in results:
        c = r.config
        key = ((c.data, c.arch, c.optimizer), weighting_label(c))
        groups.setdefault(key, {}).setdefault(c.lr, []).append(r)
    kept: list[TrialResult] = []
    choices: list[RateChoice] = []
    for (cell, label), by_lr in groups.items():
        if len(by_lr) == 1:
            kept += next(iter(by_lr.values()))
            continue
        scores: dict[float | None, float] = {}
        collapsed = []
        for lr, trials in by_lr.items():
            vals = [v for v, _ in (selection_score(t, metric) for t in trials
                                   if t.status == "done") if v is not None]  # fmt: skip
            scores[lr] = float(np.mean(vals)) if vals else -math.inf * sign
            bas = [t.metrics["balanced_accuracy"] for t in trials
                   if t.status == "done" and "balanced_accuracy" in t.metrics]  # fmt: skip
            classes = num_classes(trials[0])
            if bas and classes and vd.is_near_chance(float(np.mean(bas)), classes):
                collapsed.append(lr)
        chosen = max(scores, key=lambda lr: sign * scores[lr])
        kept += by_lr[chosen]
        choices.append(RateChoice(cell, label, chosen, scores, tuple(collapsed)))
    return kept, choices


class _Data:
    """Each data set of a study reloaded once (test labels, counts, class names)."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def get(self, cfg: TrialConfig) -> Any:
        key = json.dumps([cfg.data, dict(cfg.data_params)], sort_keys=True, default=str)
        if key not in self._cache:
            from weightlab.lab.data import load_data

            try:
                self._cache[key] = load_data(cfg.data, **dict(cfg.data_params))
            except Exception:
                self._cache[key] = None
        return self._cache[key]


def _probe(config: TrialConfig, counts: npt.NDArray[Any]) -> tuple[Any, ...] | None:
    """The weighting's loss on fixed probe batches: (model options, values, gradients)."""
    import torch

    from weightlab.lab.weightings import resolve_weighting

    try:
        w = resolve_weighting(config, counts)
    except Exception:
        return None
    c = int(counts.shape[0])
    g = torch.Generator().manual_seed(12345)
    p = torch.as_tensor(counts, dtype=torch.float64)
    batches = []
    for prior in (p / p.sum(), torch.full((c,), 1.0 / c, dtype=torch.float64)):
        y = torch.multinomial(prior, 256, replacement=True, generator=g)
        z = (torch.randn(256, c, generator=g, dtype=torch.float64) * 2.0).requires_grad_(True)
        batches.append((z, y))
    weight = torch.as_tensor(w.class_weight, dtype=torch.float64)
    values, grads = [], []
    for z, y in batches:
        parts = w.loss(z, y, weight)
        loss = parts.total / parts.normalizer
        (grad,) = torch.autograd.grad(loss, z)
        values.append(float(loss.detach()))
        grads.append(grad.detach().numpy().ravel())
    return (json.dumps(w.model_params, sort_keys=True), values, grads)


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    if a[0] != b[0]:
        return False
    for va, vb, ga, gb in zip(a[1], b[1], a[2], b[2], strict=True):
        if abs(va - vb) > ALIAS_TOLERANCE * max(abs(va), 1e-12):
            return False
        if np.linalg.norm(ga - gb) > ALIAS_TOLERANCE * max(float(np.linalg.norm(ga)), 1e-12):
            return False
    return True


def alias_groups(
    configs: Sequence[TrialConfig], train_counts: npt.ArrayLike | None
) -> list[list[str]]:
    r"""Weighting labels of ``configs`` grouped by the loss they train on these counts.

    Each weighting is resolved once (:func:`weightlab.lab.weightings.resolve_weighting`:
    its class weights, loss and model options). Two are one group when their
    model options are equal and, on two fixed probe batches (256 rows of logits
    :math:`\sim N(0, 2^2)`, labels drawn from the training prior and uniformly),
    the weighted mean loss :math:`L` and its gradient :math:`g` in the logits agree:
    :math:`|L_a - L_b| \le \epsilon |L_a|` and :math:`\|g_a - g_b\| \le \epsilon \|g_a\|`,
    :math:`\epsilon` = :data:`ALIAS_TOLERANCE`. So power(alpha=1) and ``balanced``
    are one group, and so are ``logit_adjusted`` (tau = 1) and ``balanced_softmax``.
    Without counts every label is its own group.

    Example:
        >>> cfg = lambda w, a=None: TrialConfig("d", "mlp", "sgd", w, a, 0)
        >>> alias_groups([cfg("none"), cfg("power", 1.0), cfg("balanced"), cfg("power", 0.0)],
        ...              [100, 10])
        [['none', 'power(a=0)'], ['power(a=1)', 'balanced']]
    """
    first: dict[str, TrialConfig] = {}
    for c in configs:
        first.setdefault(weighting_label(c), c)
    if train_counts is None:
        return [[label] for label in first]
    counts = np.asarray(train_counts)
    groups: list[tuple[tuple[Any, ...] | None, list[str]]] = []
    for label, cfg in first.items():
        sig = _probe(cfg, counts)
        for g_sig, members in groups:
            if sig is not None and g_sig is not None and _same(g_sig, sig):
                members.append(label)
                break
        else:
            groups.append((sig, [label]))
    return [members for _, members in groups]


# -- the summary ----------------------------------------------------------------------------


@dataclass
class _Entry:
    label: str
    names: list[str]
    test: dict[int, list[float]] = field(default_factory=dict)  # seed -> member values
    val: dict[int, list[float]] = field(default_factory=dict)
    boot: dict[int, list[npt.NDArray[np.float64]]] = field(default_factory=dict)
    ba: dict[int, list[float]] = field(default_factory=dict)
    failed: int = 0
    pruned: int = 0

    def per_seed(self, what: str) -> dict[int, Any]:
        src = getattr(self, what)
        return {s: np.mean(np.stack(v), 0) if what == "boot" else float(np.mean(v))
                for s, v in src.items() if v}  # fmt: skip


def _order_key(value: str, known: Sequence[str]) -> int:
    return known.index(value) if value in known else len(known)


def summarize(
    results: Iterable[TrialResult], metric: str = "balanced_accuracy", *, n_boot: int = N_BOOT
) -> Summary:
    """Rank every cell's weightings on validation, report them on test, and answer the question.

    Failed trials count in ``failed`` and not in the statistics; trials with any
    other status than done and failed (``"pruned"`` by a tuner, ``"running"``)
    are counted in ``n_pruned`` and left out. The test labels for the test-row
    bootstrap are the data set reloaded with
    ``weightlab.lab.data.load_data(config.data, **config.data_params)``
    (deterministic splits); a data set that cannot be reloaded gets intervals of
    seed noise alone, and the answer says so. See the module docstring for the
    statistics and ``docs/lab.md`` for the formulas.

    Raises:
        InvalidValueError: if ``metric`` is not a metric the lab computes.

    Example:
        >>> summarize([], "macro_f1").answer
        'No trial finished, so there is nothing to compare.'
    """
    if metric not in HIGHER_IS_BETTER:
        raise InvalidValueError(
            expected("metric", f"to be one of {names(METRIC_NAMES)}", repr(metric),
                     "Pick one of those.")
        )
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    results = list(results)
    # a tuner's search trials are scored on validation only (no test metrics by design);
    # its judged trials, retrained on several seeds, are what the statistics use
    searched = sum(1 for r in results if r.extra.get("tune_role") == "search")
    results = [r for r in results if r.extra.get("tune_role") != "search"]
    datas = _Data()

    def classes_of(r: TrialResult) -> int | None:
        d = datas.get(r.config)
        return d.num_classes if d is not None else None

    results, rate_choices = choose_learning_rates(results, metric, classes_of)
    by_cell: dict[tuple[str, str, str], list[TrialResult]] = {}
    n_done = n_failed = n_pruned = 0
    for r in results:
        by_cell.setdefault((r.config.data, r.config.arch, r.config.optimizer), []).append(r)
    rows_cache: dict[int, npt.NDArray[np.int64]] = {}
    from_val_metrics = False
    any_val = False
    boot_used = False
    cells: list[CellSummary] = []
    cell_entries: dict[tuple[str, str, str], dict[str, _Entry]] = {}
    class_names: tuple[str, ...] = ()
    for key, trials in by_cell.items():
        data = datas.get(trials[0].config)
        counts = np.asarray(data.train_counts) if data is not None else None
        if data is not None and not class_names:
            class_names = tuple(str(c) for c in data.class_names)
        groups = alias_groups([t.config for t in trials], counts)
        label_of = {lab: " = ".join(g) for g in groups for lab in g}
        entries: dict[str, _Entry] = {}
        for g in groups:
            entries[" = ".join(g)] = _Entry(" = ".join(g), list(g))
        y = data.y_test.numpy() if data is not None else None
        tail = tail_classes(counts) if counts is not None else []
        for r in trials:
            e = entries[label_of[weighting_label(r.config)]]
            s = r.config.seed
            if r.status == "done" and metric in r.metrics and math.isfinite(r.metrics[metric]):
                n_done += 1
                e.test.setdefault(s, []).append(float(r.metrics[metric]))
                ba = r.metrics.get("balanced_accuracy")
                if ba is not None and math.isfinite(ba):
                    e.ba.setdefault(s, []).append(float(ba))
                v, exact = selection_score(r, metric)
                if v is not None:
                    any_val = True
                    from_val_metrics = from_val_metrics or exact
                    e.val.setdefault(s, []).append(v)
                if (metric in vd.BOOTSTRAP_METRICS and y is not None and r.test_logits
                        and len(r.test_logits) == len(y)):  # fmt: skip
                    rows = rows_cache.setdefault(len(y), vd.bootstrap_rows(len(y), n_boot))
                    pred = np.asarray(r.test_logits, dtype=np.float64).argmax(1)
                    e.boot.setdefault(s, []).append(vd.metric_from_predictions(
                        pred[rows], y[rows], data.num_classes, metric, tail))  # fmt: skip
                    boot_used = True
            elif r.status in ("done", "failed"):
                n_failed += 1
                e.failed += 1
            else:
                n_pruned += 1
                e.pruned += 1
        cell_entries[key] = entries
        cells.append(_cell(key, entries, sign, from_val_metrics,
                           data.num_classes if data is not None else None))  # fmt: skip
    archs = ARCHITECTURES.names()
    cells.sort(key=lambda c: (c.data, _order_key(c.arch, archs), _order_key(c.optimizer,
                                                                               OPTIMIZERS)))
    selection = (
        f"validation {metric} at the checkpoint epoch" if from_val_metrics
        else "the best epoch of the stored validation curve" if any_val
        else f"test {metric} (no validation scores are stored)"
    )  # fmt: skip
    interval = (
        "95 % t interval over the paired per-seed differences plus a paired bootstrap of "
        "the test rows (Satterthwaite df)" if boot_used
        else "95 % paired t interval over seeds (seed noise only: no test-row bootstrap for "
        "this metric or data)"
    )  # fmt: skip
    evidence = [c for c in cells if not c.undertrained and c.best is not None
                and c.none_balanced_accuracy is not None]  # fmt: skip
    interactions = _interactions(evidence, cell_entries, sign)
    verdict, answer = _answer(cells, evidence, interactions, metric, selection, interval,
                              n_failed, n_pruned)  # fmt: skip
    answer += _rates_sentence(rate_choices)
    if searched:
        answer += (f" {searched} tuning trial(s) (`weightlab tune`'s search, scored on validation "
                   "only) are not in these statistics; the configurations it judged are.")
    return Summary(metric, sign > 0, tuple(cells), answer, n_done, n_failed, n_pruned,
                   verdict, selection, interval, tuple(interactions), class_names)  # fmt: skip


def _rates_sentence(choices: Sequence[RateChoice]) -> str:
    """How the learning rates were chosen, and the collapses the choice kept out."""
    if not choices:
        return ""
    by_opt: dict[str, dict[float | None, int]] = {}
    for ch in choices:
        tally = by_opt.setdefault(ch.cell[2], {})
        tally[ch.chosen] = tally.get(ch.chosen, 0) + 1
    parts = [f"{opt}: " + ", ".join(f"lr {lr:g} for {n}" for lr, n in sorted(
        t.items(), key=lambda kv: (kv[0] is None, kv[0] or 0.0)))
        for opt, t in by_opt.items()]  # fmt: skip
    text = (" Each weighting is compared at its own learning rate, the one of the study's grid "
            "best on validation (chosen per cell and weighting: " + "; ".join(parts) + ").")
    avoided = [ch for ch in choices if ch.collapsed and ch.chosen not in ch.collapsed]
    if avoided:
        shown = ", ".join(f"{ch.weighting} with {ch.cell[1]}/{ch.cell[2]} at lr "
                          f"{'/'.join(f'{lr:g}' for lr in ch.collapsed if lr is not None)}"
                          for ch in avoided[:4])  # fmt: skip
        text += (f" At another rate of the grid, {len(avoided)} of them collapse to near chance "
                 f"({shown}{', ...' if len(avoided) > 4 else ''}): a step-size collapse, not an "
                 "effect of the weight, and left out.")
    both = [ch for ch in choices if ch.chosen in ch.collapsed]
    if both:
        text += (f" {len(both)} weighting(s) are near chance even at their best rate of the grid "
                 "(" + ", ".join(f"{ch.weighting} with {ch.cell[1]}/{ch.cell[2]}"
                                 for ch in both[:4]) + "): widen the grid for them.")
    return text


def _none_entry(entries: dict[str, _Entry]) -> _Entry | None:
    return next((e for e in entries.values() if "none" in e.names), None)


def _paired(a: _Entry, b: _Entry, sign: float) -> vd.GainInterval | None:
    """``sign * (a - b)`` on test, paired per seed, with the test-row bootstrap term."""
    ta, tb = a.per_seed("test"), b.per_seed("test")
    seeds = sorted(set(ta) & set(tb))
    if not seeds:
        return None
    d = [sign * (ta[s] - tb[s]) for s in seeds]
    ba, bb = a.per_seed("boot"), b.per_seed("boot")
    test_var = 0.0
    if all(s in ba and s in bb for s in seeds):
        boot = np.mean([sign * (ba[s] - bb[s]) for s in seeds], axis=0)
        test_var = float(np.var(boot, ddof=1))
    return vd.gain_interval(d, test_var)


def _cell(
    key: tuple[str, str, str],
    entries: dict[str, _Entry],
    sign: float,
    from_val_metrics: bool,
    num_classes: int | None,
) -> CellSummary:
    none = _none_entry(entries)
    val_sign = sign if from_val_metrics else 1.0
    # P(best) on validation over the seeds every entry with a validation score has
    with_val = [e for e in entries.values() if e.val]
    p_best: dict[str, float] = {}
    if with_val:
        vals = [e.per_seed("val") for e in with_val]
        seeds = sorted(set.intersection(*(set(v) for v in vals)))
        if seeds:
            mat = np.array([[v[s] for v in vals] for s in seeds])
            probs = vd.prob_best(mat, higher_is_better=val_sign > 0)
            p_best = {e.label: float(p) for e, p in zip(with_val, probs, strict=True)}

    def rank_key(e: _Entry) -> tuple[int, int, float, str]:
        test = e.per_seed("test")
        val = e.per_seed("val")
        if not test:
            return (1, 1, 0.0, e.label)
        if val:
            return (0, 0, -val_sign * statistics.fmean(val.values()), e.label)
        return (0, 1, -sign * statistics.fmean(test.values()), e.label)

    ranked = sorted(entries.values(), key=rank_key)
    top = ranked[0] if ranked and ranked[0].test else None
    stats_: list[WeightingStats] = []
    for e in ranked:
        test = list(e.per_seed("test").values())
        val = list(e.per_seed("val").values())
        gain = _paired(e, none, sign) if none is not None and e is not none else None
        if e is none and none is not None and test:
            gain = vd.gain_interval([0.0] * len(test))
        mark = ""
        if top is not None and test:
            if e is top:
                mark = "chosen"
            else:
                vs = _paired(e, top, sign)
                if vs is not None and math.isfinite(vs.low):
                    mark = ("better on test" if vs.low > 0 else "worse" if vs.high < 0
                            else "tie")  # fmt: skip
        stats_.append(WeightingStats(
            weighting=e.label,
            mean=statistics.fmean(test) if test else math.nan,
            std=statistics.stdev(test) if len(test) > 1 else 0.0,
            n=len(test),
            failed=e.failed,
            gain=gain.estimate if gain is not None else None,
            gain_low=gain.low if gain is not None and math.isfinite(gain.low) else None,
            gain_high=gain.high if gain is not None and math.isfinite(gain.high) else None,
            val_mean=statistics.fmean(val) if val else None,
            p_best=p_best.get(e.label),
            mark=mark,
            names=tuple(e.names),
            pruned=e.pruned,
            near_chance=bool(e.ba and num_classes and vd.is_near_chance(
                statistics.fmean(e.per_seed("ba").values()), num_classes)),
        ))  # fmt: skip
    none_ba = statistics.fmean(none.per_seed("ba").values()) if none and none.ba else None
    under = (none_ba is not None and num_classes is not None
             and vd.is_near_chance(none_ba, num_classes))  # fmt: skip
    return CellSummary(*key, ranking=tuple(stats_), undertrained=under,
                       none_balanced_accuracy=none_ba, num_classes=num_classes)  # fmt: skip


def _cell_name(c: CellSummary, many_data: bool) -> str:
    return f"{c.data}:{c.arch}/{c.optimizer}" if many_data else f"{c.arch}/{c.optimizer}"


def _interactions(
    evidence: Sequence[CellSummary],
    cell_entries: dict[tuple[str, str, str], dict[str, _Entry]],
    sign: float,
) -> list[Interaction]:
    """Per entry label found in two or more trained cells: the interaction test and effect."""
    many = len({c.data for c in evidence}) > 1
    gains: dict[str, list[tuple[str, list[float], Any, vd.GainInterval]]] = {}
    for c in evidence:
        entries = cell_entries[(c.data, c.arch, c.optimizer)]
        none = _none_entry(entries)
        if none is None:
            continue
        tn, bn = none.per_seed("test"), none.per_seed("boot")
        for e in entries.values():
            if e is none:
                continue
            te, be = e.per_seed("test"), e.per_seed("boot")
            seeds = sorted(set(te) & set(tn))
            if not seeds:
                continue
            d = [sign * (te[s] - tn[s]) for s in seeds]
            boot = (np.mean([sign * (be[s] - bn[s]) for s in seeds], axis=0)
                    if all(s in be and s in bn for s in seeds) else None)  # fmt: skip
            gi = vd.gain_interval(d, float(np.var(boot, ddof=1)) if boot is not None else 0.0)
            gains.setdefault(e.label, []).append((_cell_name(c, many), d, boot, gi))
    tested = [(w, gs) for w, gs in gains.items() if len(gs) >= 2]
    out: list[Interaction] = []
    raw = []
    for _, gs in tested:
        t = vd.heterogeneity_test([g[1] for g in gs])
        raw.append(t.p_value if math.isfinite(t.p_value) else 1.0)
    adjusted = vd.holm(raw) if raw else []
    for (w, gs), p, ph in zip(tested, raw, adjusted, strict=True):
        hi = max(gs, key=lambda g: g[3].estimate)
        lo = min(gs, key=lambda g: g[3].estimate)
        test_var = (float(np.var(hi[2] - lo[2], ddof=1))
                    if hi[2] is not None and lo[2] is not None else 0.0)  # fmt: skip
        diff = vd.difference_interval(hi[1], lo[1], test_var)
        per_seed = (float(np.var(hi[1], ddof=1)) + float(np.var(lo[1], ddof=1))
                    if len(hi[1]) > 1 and len(lo[1]) > 1 else math.nan)  # fmt: skip
        resolved = diff.excludes_zero or (math.isfinite(diff.low) and
                                          -vd.EQUIVALENCE_MARGIN < diff.low
                                          and diff.high < vd.EQUIVALENCE_MARGIN)  # fmt: skip
        need = None if resolved else vd.seeds_needed(per_seed, test_var, diff.estimate)
        out.append(Interaction(w, tuple(g[0] for g in gs), p, ph, hi[0], lo[0], hi[3], lo[3],
                               diff, need))  # fmt: skip
    return out


def _f(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:+.3f}"


def _ci(g: vd.GainInterval | None) -> str:
    if g is None:
        return "n/a"
    if not math.isfinite(g.low):
        return f"{_f(g.estimate)} (one seed: no interval)"
    return f"{_f(g.estimate)} [{_f(g.low)}, {_f(g.high)}]"


def _wci(w: WeightingStats) -> str:
    if w.gain is None:
        return "no 'none' to compare with"
    if w.gain_low is None or w.gain_high is None:
        return f"{_f(w.gain)} (one seed: no interval)"
    return f"{_f(w.gain)} [{_f(w.gain_low)}, {_f(w.gain_high)}]"


def _answer(
    cells: Sequence[CellSummary],
    evidence: Sequence[CellSummary],
    interactions: Sequence[Interaction],
    metric: str,
    selection: str,
    interval: str,
    n_failed: int,
    n_pruned: int,
) -> tuple[str, str]:
    """The verdict ("yes", "no", "inconclusive" or "") and the paragraph that says it."""
    scored = [c for c in cells if c.best is not None]
    if not scored:
        return "", "No trial finished, so there is nothing to compare."
    many = len({c.data for c in scored}) > 1
    lines = [f"Weightings are ranked on {selection} and reported on test; gains over 'none' "
             f"in {metric} are paired per seed, with {interval}."]  # fmt: skip
    under = [c for c in scored if c.undertrained]
    if under:
        parts = [f"{_cell_name(c, many)} ({c.none_balanced_accuracy:.3f})" for c in under
                 if c.none_balanced_accuracy is not None]  # fmt: skip
        c0 = under[0]
        k = c0.num_classes or 0
        lim = 1 / k + vd.CHANCE_MARGIN * (1 - 1 / k) if k else math.nan
        lines.append(
            f"Undertrained, so not used as evidence: {', '.join(parts)}: the unweighted model's "
            f"test balanced accuracy is within {vd.CHANCE_MARGIN:.0%} of the way from chance "
            f"(1/{k} = {1 / k:.3f}) to 1 (at most {lim:.3f}); train longer before reading "
            "their gains."
        )
    no_base = [c for c in scored if c.none_balanced_accuracy is None and not c.undertrained]
    if no_base:
        lines.append("Without a finished 'none' (so no gain and no chance check): "
                     + ", ".join(_cell_name(c, many) for c in no_base) + ".")  # fmt: skip
    if evidence:
        parts = []
        for c in evidence:
            b = c.best
            assert b is not None
            p = f"P(best) {b.p_best:.2f}, " if b.p_best is not None else ""
            ties = [w.weighting for w in c.ranking if w.mark == "tie"]
            tie = f"; tied with {len(ties)} other(s)" if ties else ""
            parts.append(f"{_cell_name(c, many)}: '{b.weighting}' ({p}gain {_wci(b)}{tie})")
        lines.append("Chosen per trained cell (P(best) from resampling seeds on validation; "
                     "test gain over 'none' [95 % CI]): " + "; ".join(parts) + ".")  # fmt: skip
        helped = [c for c in evidence if c.best and c.best.gain_low is not None
                  and c.best.gain_low > 0]  # fmt: skip
        lines.append(f"The chosen weighting beats 'none' (interval above 0) in {len(helped)} of "
                     f"{len(evidence)} trained cell(s).")  # fmt: skip
    verdict = ""
    if len(evidence) < 2:
        lines.append("Fewer than two trained cells, so whether a weight acts differently in "
                     "different networks cannot be tested here.")  # fmt: skip
    elif not interactions:
        lines.append("No weighting was measured in two trained cells, so the interaction "
                     "cannot be tested.")  # fmt: skip
    else:
        m = len(interactions)
        sig = [i for i in interactions if i.p_holm < ALPHA and i.difference.excludes_zero]
        same = [i for i in interactions if i.p_holm >= ALPHA and math.isfinite(i.difference.low)
                and -vd.EQUIVALENCE_MARGIN < i.difference.low
                and i.difference.high < vd.EQUIVALENCE_MARGIN]  # fmt: skip
        test_txt = ("permutation test of the weighting x network interaction on the paired "
                    f"gains, Holm-adjusted over {m} weighting(s)")  # fmt: skip
        if sig:
            i = max(sig, key=lambda i: abs(i.difference.estimate))
            verdict = "yes"
            lines.append(
                f"Does the same weight act differently in different networks? Yes: '{i.weighting}' "
                f"gains {_ci(i.gain_high)} with {i.high} but {_ci(i.gain_low)} with {i.low}, a "
                f"difference of {_ci(i.difference)} ({test_txt}: p = {i.p_holm:.3g}); "
                f"{len(sig)} of {m} weighting(s) differ this clearly."
            )
            by_name = {_cell_name(c, many): c for c in evidence}
            for where in (i.low, i.high):
                w = next((x for x in by_name[where].ranking if x.weighting == i.weighting), None)
                if w is not None and w.near_chance:
                    lines.append(
                        f"With {where}, '{i.weighting}' is itself near chance (its balanced "
                        "accuracy is within the undertrained margin): a collapse at this "
                        "optimizer's learning rate, not a graded effect of the weight; compare "
                        "learning rates before reading it as one."
                    )
        elif len(same) == m:
            verdict = "no"
            i = max(interactions, key=lambda i: abs(i.difference.estimate))
            lines.append(
                "Does the same weight act differently in different networks? No: every "
                f"weighting's gain agrees between networks to within {vd.EQUIVALENCE_MARGIN} "
                f"(largest: '{i.weighting}', {i.high} minus {i.low} = {_ci(i.difference)}; "
                f"{test_txt}: smallest p = {min(x.p_holm for x in interactions):.3g})."
            )
        else:
            verdict = "inconclusive"
            open_ = [i for i in interactions if i not in same]
            i = max(open_, key=lambda i: abs(i.difference.estimate))
            n_now = min(i.gain_high.n, i.gain_low.n)
            if i.seeds_needed is not None:
                more = (f"about {max(i.seeds_needed - n_now, 1)} more seed(s) per cell "
                        f"({i.seeds_needed} in all) would resolve a difference of "
                        f"{abs(i.difference.estimate):.3f}")  # fmt: skip
            else:
                more = (f"more seeds alone would not resolve a difference of "
                        f"{abs(i.difference.estimate):.3f} (the test split's noise alone is too "
                        "large, or one seed gives no seed noise estimate: run at least two)")
            lines.append(
                f"Does the same weight act differently in different networks? Inconclusive with "
                f"{n_now} seed(s); {more}: the largest is '{i.weighting}', {_ci(i.gain_high)} "
                f"with {i.high} against {_ci(i.gain_low)} with {i.low}, a difference of "
                f"{_ci(i.difference)} ({test_txt}: p = {i.p_holm:.3g})."
            )
    if n_failed:
        lines.append(f"{n_failed} trial(s) failed (diverged) and are left out of the statistics.")
    if n_pruned:
        lines.append(f"{n_pruned} trial(s) were pruned (or not finished) and are counted apart, "
                     "not used.")  # fmt: skip
    return verdict, " ".join(lines)
