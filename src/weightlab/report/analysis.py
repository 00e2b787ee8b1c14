"""The numbers of the report, read back from a study's store: plain data, no layout.

:func:`analyze` reads a store once and returns a :class:`ReportAnalysis`: the
study's summary, the class weights of each scheme, the strength sweep, the
per-class recall, the calibration of re-weighting against post-hoc logit
adjustment, and the gradient diagnostics per architecture. Every value is a
float, an int, a string, a list or a dict of them (or a dataclass of those);
nothing here formats a number for display, draws a figure or writes HTML --
that is :mod:`weightlab.report.render`.

**Test labels.** The store keeps each trial's test logits but not the test
labels. :class:`DataCache` reloads the data set each trial names with
``weightlab.lab.data.load_data(config.data, **config.data_params)``; loading is
deterministic (fixed split seeds), so these are the labels the trial was
scored on. A data set that cannot be reloaded (a file that moved) is recorded
in :attr:`ReportAnalysis.data_errors`, and the sections that need it skip the
trials concerned.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from weightlab.lab import diagnose
from weightlab.lab.architectures import ARCHITECTURES
from weightlab.lab.metrics import HIGHER_IS_BETTER
from weightlab.lab.optim import OPTIMIZERS
from weightlab.lab.store import ResultStore
from weightlab.lab.summary import Summary, summarize
from weightlab.lab.trial import TrialConfig, TrialResult
from weightlab.lab.weightings import weighting_label

__all__ = [
    "ArchCalibration",
    "CellBest",
    "CellDetail",
    "DataCache",
    "DataInfo",
    "FailedTrial",
    "GradientPanel",
    "ModelUse",
    "ReliabilityBins",
    "ReportAnalysis",
    "Score",
    "StrengthCurve",
    "StrengthSweep",
    "UpdateTransfer",
    "adjust_logits",
    "analyze",
    "arch_best",
    "best_per_cell",
    "calibration",
    "cell_details",
    "logit_scale",
    "model_label",
    "diagnostics_trial",
    "expected_calibration_error",
    "failures",
    "gradient_panels",
    "mean_recall",
    "model_uses",
    "nanmean",
    "order",
    "power_alphas",
    "reliability_bins",
    "scheme_weights",
    "softmax",
    "strength_sweep",
    "update_transfer",
    "weighting_order",
]

#: Bins of the reliability diagrams.
RELIABILITY_BINS = 10
#: Temperature of the post-hoc logit adjustment shown next to re-weighting.
TAU = 1.0


# -- plain data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DataInfo:
    """The study's data set as the store's ``data`` metadata describes it.

    Attributes:
        name: the data set's name (``None`` when not recorded).
        class_names: one name per class (class indices as strings when not recorded).
        train_counts: training examples per class (empty when not recorded).
        n_train: training rows (``None`` when not recorded); ``n_val``, ``n_test`` likewise.
    """

    name: str | None
    class_names: list[str]
    train_counts: list[int]
    n_train: int | None
    n_val: int | None
    n_test: int | None


@dataclass(frozen=True)
class CellBest:
    """The best weighting of one (arch, optimizer) cell and how far the others are.

    Attributes:
        arch, optimizer: the cell.
        best: the best weighting's label; ``mean``, ``std``, ``n``, ``gain`` are its
            :class:`~weightlab.lab.study.WeightingStats`.
        runner_up: the second best weighting (``None`` when the cell has one).
        margin: ``|mean(best) - mean(runner_up)|`` (``None`` without a runner-up).
        spread: ``|mean(best) - mean(worst)|``.
        gains: every finished weighting's gain over ``"none"``.
    """

    arch: str
    optimizer: str
    best: str
    mean: float
    std: float
    n: int
    gain: float | None
    runner_up: str | None
    margin: float | None
    spread: float
    gains: dict[str, float | None]


@dataclass(frozen=True)
class CellDetail:
    """What the report draws for one cell: curves, confusion, per-class scores, PR.

    Attributes:
        arch, optimizer: the cell; ``label``: its model (:func:`model_label`).
        shown: the entries drawn, ``"none"`` first then the chosen one (labels as the summary's).
        undertrained: the summary's flag.
        train_loss, val_metric: per entry, the mean over seeds of each epoch's value
            (epochs every seed reached).
        confusion: per entry, test confusion counts summed over seeds, ``[true][pred]``.
        precision, recall: per entry, per class, the mean over seeds of the stored values.
        pr: binary tasks only: per entry ``(recall, precision, chosen_recall,
            chosen_precision, positive)`` of the pooled test scores of the rarer class,
            with the argmax decision (probability 0.5) as the chosen threshold.
    """

    arch: str
    optimizer: str
    label: str
    shown: list[str]
    undertrained: bool
    train_loss: dict[str, list[float]]
    val_metric: dict[str, list[float]]
    confusion: dict[str, list[list[int]]]
    precision: dict[str, list[float]]
    recall: dict[str, list[float]]
    pr: dict[str, tuple[list[float], list[float], float, float, int]]


@dataclass(frozen=True)
class StrengthCurve:
    """A metric against the ``power`` strength alpha: mean, min and max over seeds."""

    alpha: list[float]
    mean: list[float]
    low: list[float]
    high: list[float]


@dataclass(frozen=True)
class StrengthSweep:
    """The strength sweep: ``curves[(metric, arch, optimizer)]`` for each metric shown."""

    metrics: list[str]
    curves: dict[tuple[str, str, str], StrengthCurve]


@dataclass(frozen=True)
class ReliabilityBins:
    """A pooled reliability curve over equal-width confidence bins (non-empty bins only).

    Attributes:
        confidence: mean top-class confidence of each bin.
        accuracy: fraction of the bin's rows whose argmax is the label.
        count: rows in each bin (they sum to the rows pooled).
        ece: expected calibration error, ``sum_b count_b / N * |accuracy_b - confidence_b|``.
    """

    confidence: list[float]
    accuracy: list[float]
    count: list[int]
    ece: float


@dataclass(frozen=True)
class Score:
    """Mean metric and mean ECE over ``n`` trials (``None`` when none is finite)."""

    metric: float | None
    ece: float | None
    n: int


@dataclass(frozen=True)
class ArchCalibration:
    """Calibration of one architecture, pooled over optimizers and seeds.

    Attributes:
        arch: the architecture.
        reliability: per weighting label, the reliability of its trained models.
        trained: per weighting label (the same keys), the stored metric and ECE.
        adjusted: reliability of the ``"none"`` models after post-hoc logit
            adjustment (``None`` without ``"none"`` trials).
        adjusted_score: metric and ECE of those adjusted logits (``None`` likewise).
        best: the architecture's best weighting (:func:`arch_best`), ``None`` if unknown.

    Logits are those the loss trains on: LDAM's cosine logits times its scale ``s``
    (:func:`logit_scale`), so its ECE is not that of raw cosines.
    """

    arch: str
    reliability: dict[str, ReliabilityBins]
    trained: dict[str, Score]
    adjusted: ReliabilityBins | None
    adjusted_score: Score | None
    best: str | None = None


@dataclass(frozen=True)
class GradientPanel:
    """One architecture's gradient diagnostics, at initialisation or after training.

    Attributes:
        arch: the architecture.
        when: ``"init"`` or ``"final"``.
        source: ``"stored"`` (by the engine) or ``"computed"`` (for the report, at
            initialisation on a freshly built model).
        weighting, optimizer, seed: the trial they belong to (weighting as its label).
        diagnostics: as :func:`weightlab.diagnostics.record_diagnostics` returns them
            (``layers``, ``classes``, ``share_unweighted``, ``share_weighted``,
            ``loss_mass``, ``loss_mass_unweighted``).
    """

    arch: str
    when: Literal["init", "final"]
    source: Literal["stored", "computed"]
    weighting: str
    optimizer: str
    seed: int
    diagnostics: Mapping[str, Any]


@dataclass(frozen=True)
class UpdateTransfer:
    """How much of a weighting's push on its tail classes reaches the parameters, in one cell.

    ``tail`` are the classes whose loss mass the weighting raises (``loss_mass``
    above ``loss_mass_unweighted``); each share below is the tail's summed share
    per layer (:mod:`weightlab.diagnostics`), averaged over the layers.

    Attributes:
        arch, optimizer: the cell.
        weighting, seed: the weighted trial (:func:`diagnostics_trial` of the cell).
        when: ``"init"`` or ``"final"``; source: ``"stored"`` or ``"computed"``.
        tail: the tail classes' indices.
        grad_unweighted, grad_weighted: the trial's gradient shares without and with its weights.
        update_weighted: its update shares (its own loss and optimizer state).
        grad_none, update_none: the cell's ``none`` trial of the same seed at the same moment
            (its own gradient and update shares), ``None`` without one.
        reached: :math:`(u_w - u_0) / (g_w - g_0)`, the part of the weighting's change of the
            tail's gradient share that its update share shows (``_w``: the weighted trial;
            ``_0``: the ``none`` trial); 1 under SGD, ``None`` without a ``none`` trial or
            when the gradient share moved by less than 0.001.
        optimizer_class, preconditioner: from the trial's ``update_shares``.
    """

    arch: str
    optimizer: str
    weighting: str
    seed: int
    when: Literal["init", "final"]
    source: Literal["stored", "computed"]
    tail: list[int]
    grad_unweighted: float
    grad_weighted: float
    update_weighted: float
    grad_none: float | None
    update_none: float | None
    reached: float | None
    optimizer_class: str
    preconditioner: str


@dataclass(frozen=True)
class FailedTrial:
    """A trial stored as failed, and why."""

    trial_id: str
    arch: str
    optimizer: str
    weighting: str
    seed: int
    reason: Any


@dataclass(frozen=True)
class ModelUse:
    """An architecture's model options and the weightings (raw names) trained with them."""

    arch: str
    params: tuple[tuple[str, Any], ...]
    weightings: frozenset[str]


@dataclass(frozen=True)
class ReportAnalysis:
    """Everything the report shows, as numbers; see :func:`analyze`.

    Attributes:
        metric, higher_is_better: the ranking metric and its direction.
        n_trials, n_done, n_failed, n_pruned: trials in the store, finished, failed, and
            with any other status (pruned by a tuner, running): counted, never used.
        archs, optimizers: those of the trials, in the lab's order.
        data: the data set (:class:`DataInfo`).
        summary: :func:`weightlab.lab.study.summarize` of the trials (``None``
            for a metric the lab does not compute); ``best`` its best weighting per cell.
        weights: class weights of each scheme (:func:`scheme_weights`).
        strength: the strength sweep (``None`` without ``power`` trials).
        recall: per architecture, :func:`mean_recall` (architectures without any left out).
        calibration: per architecture with matched logits, :func:`calibration`.
        data_errors: data sets that could not be reloaded, and why.
        gradients, diagnostics_errors: :func:`gradient_panels`.
        updates: :func:`update_transfer` per (architecture, optimizer) cell.
        failures, models: :func:`failures`, :func:`model_uses`.
        spec, command, versions: the store's metadata of the same names.
        cells: :func:`cell_details` per cell of the summary.
    """

    metric: str
    higher_is_better: bool
    n_trials: int
    n_done: int
    n_failed: int
    n_pruned: int
    archs: list[str]
    optimizers: list[str]
    data: DataInfo
    summary: Summary | None  # None for a metric the lab does not compute
    best: list[CellBest]
    weights: dict[str, list[float]]
    strength: StrengthSweep | None
    recall: dict[str, dict[str, list[float]]]
    calibration: list[ArchCalibration]
    data_errors: dict[str, str]
    gradients: list[GradientPanel]
    diagnostics_errors: dict[str, str]
    failures: list[FailedTrial]
    models: list[ModelUse]
    spec: dict[str, Any]
    command: Any
    versions: dict[str, Any]
    cells: list[CellDetail]
    updates: list[UpdateTransfer] = field(default_factory=list)


# -- reloading data ---------------------------------------------------------------------


class DataCache:
    """Each data set reloaded once (test labels, training counts, for diagnostics).

    A data set that fails to load is ``None`` and its error is kept in
    :attr:`errors` under the data set's name.
    """

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def get(self, cfg: TrialConfig) -> Any:
        """The :class:`~weightlab.lab.data.LabData` of ``cfg`` (``None`` if it cannot load)."""
        key = json.dumps([cfg.data, dict(cfg.data_params)], sort_keys=True)
        if key not in self._cache:
            from weightlab.lab.data import load_data

            try:
                self._cache[key] = load_data(cfg.data, **dict(cfg.data_params))
            except Exception as err:
                self._cache[key] = None
                self.errors[cfg.data] = f"{type(err).__name__}: {err}"
        return self._cache[key]


def _label(cfg: TrialConfig) -> str:
    return weighting_label(cfg)


def data_info(
    meta: Mapping[str, Any], results: Sequence[TrialResult], cache: DataCache
) -> DataInfo:
    """The store's ``data`` metadata, else the first trial's data set reloaded.

    Without class names, the classes are named by index from the first finished
    trial's test logits.
    """
    data_meta = dict(meta.get("data") or {})
    if not data_meta and results:
        data = cache.get(results[0].config)
        if data is not None:
            data_meta = {
                "name": data.name,
                "class_names": list(data.class_names),
                "train_counts": [int(c) for c in data.train_counts],
                "n_train": int(data.y_train.shape[0]),
                "n_val": int(data.y_val.shape[0]),
                "n_test": int(data.y_test.shape[0]),
            }
    class_names = [str(c) for c in data_meta.get("class_names", [])]
    done = [r for r in results if r.status == "done"]
    if not class_names and done and done[0].test_logits:
        class_names = [str(c) for c in range(len(done[0].test_logits[0]))]
    return DataInfo(
        name=data_meta.get("name"),
        class_names=class_names,
        train_counts=[int(c) for c in data_meta.get("train_counts", [])],
        n_train=data_meta.get("n_train"),
        n_val=data_meta.get("n_val"),
        n_test=data_meta.get("n_test"),
    )


# -- ordering ---------------------------------------------------------------------------


def order(values: Iterable[str], known: Sequence[str]) -> list[str]:
    """The distinct ``values``: those in ``known`` in its order, then the rest sorted.

    Example:
        >>> order(["gru", "x", "mlp", "gru"], ("mlp", "cnn", "gru"))
        ['mlp', 'gru', 'x']
    """
    vs = set(values)
    return [v for v in known if v in vs] + sorted(vs - set(known))


def weighting_order(labels: Iterable[str]) -> list[str]:
    """Distinct weighting labels: ``none``, then the others by name, then ``power`` by alpha.

    Example:
        >>> weighting_order(["power(a=1)", "focal", "none", "power(a=0.5)"])
        ['none', 'focal', 'power(a=0.5)', 'power(a=1)']
    """

    def key(w: str) -> tuple[int, float, str]:
        if w == "none":
            return (0, 0.0, w)
        if w.startswith("power(a="):
            return (2, float(w[8:-1]), w)
        return (1, 0.0, w)

    return sorted(set(labels), key=key)


# -- small statistics -------------------------------------------------------------------


def nanmean(vs: Sequence[float | None]) -> float | None:
    """Mean of the finite values of ``vs`` (``None`` if there is none).

    Example:
        >>> nanmean([1.0, float("nan"), 3.0]), nanmean([float("nan")])
        (2.0, None)
    """
    good = [v for v in vs if v is not None and math.isfinite(v)]
    return statistics.fmean(good) if good else None


def softmax(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Row-wise ``exp(z_ic - max_c z_ic) / sum_c' exp(z_ic' - max_c z_ic)`` of ``(N, C)`` logits."""
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)  # type: ignore[no-any-return]


def reliability_bins(
    logits: Sequence[npt.NDArray[np.float64]],
    labels: Sequence[npt.NDArray[np.int64]],
    n_bins: int = RELIABILITY_BINS,
) -> ReliabilityBins:
    r"""Pooled reliability curve of several models' ``(N_k, C)`` logits and their labels.

    The top-class confidence ``p_i = max_c softmax(z_i)_c`` of every row falls in
    one of ``n_bins`` equal-width bins of [0, 1] (the last one closed), and

    .. math::
        \mathrm{ECE} = \sum_b \frac{|B_b|}{N} \, |\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|

    where ``acc`` is the fraction of rows whose argmax is the label and ``conf``
    the mean confidence of the bin. Empty bins are left out of the curve.
    """
    conf = np.concatenate([softmax(z).max(1) for z in logits])
    hit = np.concatenate([(z.argmax(1) == y) for z, y in zip(logits, labels, strict=True)])
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, n_bins - 1)
    xs: list[float] = []
    ys: list[float] = []
    ns: list[int] = []
    ece = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            xs.append(float(conf[m].mean()))
            ys.append(float(hit[m].mean()))
            ns.append(int(m.sum()))
            ece += m.mean() * abs(conf[m].mean() - hit[m].mean())
    return ReliabilityBins(xs, ys, ns, float(ece))


def expected_calibration_error(
    logits: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], n_bins: int = RELIABILITY_BINS
) -> float:
    """ECE of one model's ``(N, C)`` logits (see :func:`reliability_bins` for the formula)."""
    return reliability_bins([logits], [labels], n_bins).ece


def adjust_logits(
    logits: npt.NDArray[np.float64], counts: Sequence[float], tau: float = TAU
) -> npt.NDArray[np.float64]:
    """Post-hoc logit adjustment ``z_ic - tau * log(n_c / sum_c' n_c')`` (float64).

    The arithmetic is :func:`weightlab.functional.adjust_logits` (Menon et al. 2021).
    """
    import torch

    from weightlab.functional import adjust_logits as _adjust

    z = torch.as_tensor(logits, dtype=torch.float64)
    return _adjust(z, list(map(float, counts)), tau).numpy()


def logit_scale(cfg: TrialConfig) -> float:
    """The factor the trial's loss multiplies its stored logits by: LDAM's ``s``, else 1.

    LDAM trains ``s * (cos - margin)`` on the cosine head, and the engine stores the
    cosines; its probabilities are ``softmax(s * cos)`` (at test time there is no margin).

    Example:
        >>> logit_scale(TrialConfig("d", "mlp", "sgd", "ldam", None, 0))
        30.0
        >>> logit_scale(TrialConfig("d", "mlp", "sgd", "focal", None, 0))
        1.0
    """
    from weightlab.lab.weightings import weighting_loss_name
    from weightlab.losses import LOSSES

    if weighting_loss_name(cfg.weighting) != "ldam":
        return 1.0
    return float(LOSSES.info("ldam").params["s"].default)


def model_label(result: TrialResult) -> str:
    """The model a trial trained: the lab architecture, or what a user ``train_stack`` reported.

    The lab's engines mark their results (``extra["stack_size"]``); a result with
    ``extra["model"]`` is named by it; any other came from a user ``train_stack``
    whose model is unknown, and is labelled so rather than by the lab name it borrowed.

    Example:
        >>> cfg = TrialConfig("d", "mlp", "sgd", "none", None, 0)
        >>> model_label(TrialResult(cfg, "done", extra={"stack_size": 4}))
        'mlp'
        >>> model_label(TrialResult(cfg, "done", extra={"model": "MyNet"}))
        'MyNet (user model, run as mlp)'
        >>> model_label(TrialResult(cfg, "done"))
        'user model (not recorded; run as mlp)'
    """
    name = result.extra.get("model") if isinstance(result.extra, dict) else None
    if isinstance(name, str) and name and name != result.config.arch:
        return f"{name} (user model, run as {result.config.arch})"
    if isinstance(result.extra, dict) and "stack_size" in result.extra:
        return result.config.arch
    return f"user model (not recorded; run as {result.config.arch})"


def _is_lab_model(result: TrialResult) -> bool:
    return model_label(result) == result.config.arch


def arch_best(summary: Summary, arch: str) -> str | None:
    """The architecture's best weighting: the best mean validation score over its cells.

    Among the entries found in every cell of ``arch`` (their first name, as the
    store labels trials); ``None`` without one.

    Example:
        >>> arch_best(Summary("balanced_accuracy", True, (), "", 0, 0), "mlp") is None
        True
    """
    cells = [c for c in summary.cells if c.arch == arch]
    if not cells:
        return None
    scores: dict[str, list[float]] = {}
    for c in cells:
        for w in c.ranking:
            v = w.val_mean if w.val_mean is not None else (w.mean if w.n else None)
            if v is not None and math.isfinite(v):
                scores.setdefault((w.names or (w.weighting,))[0], []).append(v)
    common = {k: vs for k, vs in scores.items() if len(vs) == len(cells)}
    if not common:
        return None
    sign = 1.0 if summary.higher_is_better else -1.0
    return max(common, key=lambda k: (sign * statistics.fmean(common[k]), k))


def _mean_curve(curves: Sequence[Sequence[float]]) -> list[float]:
    good = [list(c) for c in curves if c]
    if not good:
        return []
    n = min(len(c) for c in good)
    return [float(v) for v in np.mean(np.asarray([c[:n] for c in good], dtype=float), axis=0)]


def cell_details(
    summary: Summary, done: Sequence[TrialResult], cache: DataCache
) -> list[CellDetail]:
    """Per summary cell: curves, confusion matrices, per-class scores and PR of ``none`` and best.

    The chosen entry is the summary's first (ranked on validation). Confusion
    matrices and PR curves need the test labels (the data reloaded); without
    them they are left empty.
    """
    out = []
    for cell in summary.cells:
        trials = [r for r in done if (r.config.data, r.config.arch, r.config.optimizer)
                  == (cell.data, cell.arch, cell.optimizer)]  # fmt: skip
        if not trials:
            continue
        entries = {w.weighting: (w.names or (w.weighting,)) for w in cell.ranking if w.n}
        shown = [e for e, ns in entries.items() if "none" in ns]
        best = cell.best.weighting if cell.best is not None else None
        if best is not None and best not in shown:
            shown.append(best)
        tl: dict[str, list[float]] = {}
        vm: dict[str, list[float]] = {}
        conf: dict[str, list[list[int]]] = {}
        prec: dict[str, list[float]] = {}
        rec: dict[str, list[float]] = {}
        pr: dict[str, tuple[list[float], list[float], float, float, int]] = {}
        for e in shown:
            ts = [r for r in trials if _label(r.config) in entries[e]]
            tl[e] = _mean_curve([r.train_loss for r in ts])
            vm[e] = _mean_curve([r.val_metric for r in ts])
            for key, into in (("precision", prec), ("recall", rec)):
                rows = [r.per_class[key] for r in ts if r.per_class.get(key)]
                if rows:
                    into[e] = [float(v) for v in np.mean(np.asarray(rows, dtype=float), 0)]
            data = cache.get(ts[0].config)
            if data is None:
                continue
            y = data.y_test.numpy()
            c = data.num_classes
            m = np.zeros((c, c), dtype=np.int64)
            scores, labels = [], []
            for r in ts:
                z = np.asarray(r.test_logits, dtype=np.float64)
                if z.shape != (len(y), c):
                    continue
                m += np.bincount(y * c + z.argmax(1), minlength=c * c).reshape(c, c)
                scores.append(softmax(z * logit_scale(r.config)))
                labels.append(y)
            conf[e] = m.tolist()
            if c == 2 and scores:
                from sklearn.metrics import precision_recall_curve

                pos = int(np.argmin(data.train_counts))
                p_all = np.concatenate([s_[:, pos] for s_ in scores])
                y_all = np.concatenate(labels) == pos
                precision, recall, _ = precision_recall_curve(y_all, p_all)
                chosen = p_all >= 0.5
                tp = float(np.sum(chosen & y_all))
                pr[e] = ([float(v) for v in recall], [float(v) for v in precision],
                         tp / max(float(y_all.sum()), 1.0), tp / max(float(chosen.sum()), 1.0),
                         pos)  # fmt: skip
        out.append(CellDetail(cell.arch, cell.optimizer, model_label(trials[0]), shown,
                              cell.undertrained, tl, vm, conf, prec, rec, pr))  # fmt: skip
    return out


# -- sections ----------------------------------------------------------------------------


def best_per_cell(summary: Summary) -> list[CellBest]:
    """The best weighting of each cell of ``summary`` that has a finished one.

    With the runner-up, the margin to it, the spread to the worst and every gain.
    """
    out = []
    for cell in summary.cells:
        ranked = [w for w in cell.ranking if w.n]
        if not ranked:
            continue
        best, worst = ranked[0], ranked[-1]
        second = ranked[1] if len(ranked) > 1 else None
        out.append(
            CellBest(
                arch=cell.arch,
                optimizer=cell.optimizer,
                best=best.weighting,
                mean=best.mean,
                std=best.std,
                n=best.n,
                gain=best.gain,
                runner_up=second.weighting if second else None,
                margin=abs(best.mean - second.mean) if second else None,
                spread=abs(best.mean - worst.mean),
                gains={w.weighting: w.gain for w in cell.ranking if w.n},
            )
        )
    return out


def power_alphas(results: Iterable[TrialResult]) -> list[float]:
    """The distinct alphas of the ``power`` trials, ascending."""
    return sorted({r.config.alpha for r in results
                   if r.config.weighting == "power" and r.config.alpha is not None})  # fmt: skip


def scheme_weights(counts: Sequence[int], alphas: Sequence[float]) -> dict[str, list[float]]:
    """``class_weights(counts, scheme)`` of every registered scheme, at its defaults.

    In registry order, then ``power(a=...)`` at each alpha in place of ``power``.
    Schemes that refuse these counts are left out; no counts (or a zero count) give ``{}``.
    """
    weights: dict[str, list[float]] = {}
    if not counts or min(counts) <= 0:
        return weights
    from weightlab.weights import class_weights, list_schemes

    for scheme in list_schemes():
        try:
            weights[scheme] = [float(v) for v in class_weights(counts, scheme)]
        except Exception:
            continue
    for a in alphas:
        weights[f"power(a={a:g})"] = [float(v) for v in class_weights(counts, "power", alpha=a)]
    weights.pop("power", None)
    return weights


def strength_sweep(
    done: Sequence[TrialResult], metric: str, archs: Sequence[str], optimizers: Sequence[str]
) -> StrengthSweep | None:
    """``metric`` and ``tail_recall`` against alpha for the ``power`` trials.

    ``"none"`` is power with alpha 0 (every weight 1): when no power trial has
    alpha 0, the ``"none"`` trials are the curves' alpha = 0 point. Each point is
    the mean (and min, max) over the trials' finite values. ``None`` without
    power trials.
    """
    power = [r for r in done if r.config.weighting == "power" and r.config.alpha is not None]
    if power and not any(r.config.alpha == 0 for r in power):
        power += [replace(r, config=replace(r.config, alpha=0.0)) for r in done
                  if r.config.weighting == "none"]  # fmt: skip
    if not power:
        return None
    shown = [metric, "tail_recall"] if metric != "tail_recall" else [metric]
    curves: dict[tuple[str, str, str], StrengthCurve] = {}
    for m in shown:
        groups: dict[tuple[str, str, float], list[float]] = {}
        for r in power:
            v = r.metrics.get(m)
            if v is not None and math.isfinite(v):
                key = (r.config.arch, r.config.optimizer, float(r.config.alpha))  # type: ignore[arg-type]
                groups.setdefault(key, []).append(float(v))
        for arch in archs:
            for opt in optimizers:
                pts = sorted((a, vs) for (ar, op, a), vs in groups.items()
                             if ar == arch and op == opt)  # fmt: skip
                if pts:
                    curves[(m, arch, opt)] = StrengthCurve(
                        [a for a, _ in pts], [statistics.fmean(vs) for _, vs in pts],
                        [min(vs) for _, vs in pts], [max(vs) for _, vs in pts],
                    )  # fmt: skip
    return StrengthSweep(shown, curves)


def mean_recall(done: Iterable[TrialResult], arch: str) -> dict[str, list[float]]:
    """Per weighting label, the test recall of each class averaged over ``arch``'s trials."""
    rows: dict[str, list[list[float]]] = {}
    for r in done:
        rec = r.per_class.get("recall")
        if r.config.arch == arch and rec:
            rows.setdefault(_label(r.config), []).append(rec)
    return {w: [float(v) for v in np.mean(np.asarray(rs, dtype=float), axis=0)]
            for w, rs in rows.items()}  # fmt: skip


def calibration(
    done: Sequence[TrialResult], arch: str, metric: str, cache: DataCache
) -> ArchCalibration | None:
    """Reliability of ``arch``'s trained models per weighting, and of ``"none"`` adjusted post hoc.

    Pools the test logits of every finished trial of ``arch`` whose test labels
    can be reloaded (and match the logits' rows), scaled as the trial's loss
    scales them (:func:`logit_scale`: LDAM's ``s``; its ECE is recomputed so).
    The ``trained`` scores are the
    stored metric and ECE of every finished trial of each weighting; the
    adjusted score is ``compute_metrics`` of the adjusted logits
    (:func:`adjust_logits` with the training counts, tau = :data:`TAU`).
    ``None`` when no logits could be matched with labels.
    """
    from weightlab.lab.metrics import compute_metrics

    by_w: dict[str, tuple[list[Any], list[Any]]] = {}
    adjusted: tuple[list[Any], list[Any]] = ([], [])
    la_scores: list[tuple[float, float]] = []
    for r in done:
        if r.config.arch != arch or not r.test_logits:
            continue
        data = cache.get(r.config)
        if data is None:
            continue
        z = np.asarray(r.test_logits, dtype=np.float64) * logit_scale(r.config)
        y = data.y_test.numpy()
        if z.shape[0] != y.shape[0]:
            continue
        w = _label(r.config)
        by_w.setdefault(w, ([], []))
        by_w[w][0].append(z)
        by_w[w][1].append(y)
        if r.config.weighting == "none":
            za = adjust_logits(z, data.train_counts)
            adjusted[0].append(za)
            adjusted[1].append(y)
            m, _ = compute_metrics(za, y, data.train_counts)
            la_scores.append((m.get(metric, math.nan), m["ece"]))
    if not by_w:
        return None
    trained = {}
    for w in by_w:
        trials = [r for r in done if r.config.arch == arch and _label(r.config) == w]
        ms = [r.metrics.get(metric, math.nan) for r in trials]
        es = [_ece(r, cache) for r in trials]
        trained[w] = Score(nanmean(ms), nanmean(es), len(trials))
    return ArchCalibration(
        arch=arch,
        reliability={w: reliability_bins(*lz) for w, lz in by_w.items()},
        trained=trained,
        adjusted=reliability_bins(*adjusted) if adjusted[0] else None,
        adjusted_score=Score(nanmean([s[0] for s in la_scores]),
                             nanmean([s[1] for s in la_scores]), len(la_scores))
        if la_scores else None,
    )  # fmt: skip


def _ece(r: TrialResult, cache: DataCache) -> float:
    """The stored ECE, or, for a scaled loss (LDAM), that of the logits the loss uses."""
    scale = logit_scale(r.config)
    if scale == 1.0:
        return r.metrics.get("ece", math.nan)
    data = cache.get(r.config)
    z = np.asarray(r.test_logits, dtype=np.float64)
    if data is None or z.ndim != 2 or z.shape[0] != data.y_test.shape[0]:
        return math.nan
    from weightlab.lab.metrics import compute_metrics

    return compute_metrics(z * scale, data.y_test.numpy(), data.train_counts)[0]["ece"]


def diagnostics_trial(trials: Sequence[TrialResult]) -> TrialResult | None:
    """The trial whose diagnostics show the weighting best: the most skewed weighting of seed 0.

    Skew: ``none`` least, then ``power`` by alpha, ``balanced``/``inverse`` as alpha 1,
    other weightings as alpha 0.5; ties go to the lowest seed.
    """

    def skew(r: TrialResult) -> tuple[int, float, int]:
        c = r.config
        if c.weighting == "none":
            return (0, 0.0, -c.seed)
        if c.weighting == "power":
            return (1, float(c.alpha or 0.0), -c.seed)
        return (1, 1.0 if c.weighting in ("balanced", "inverse") else 0.5, -c.seed)

    return max(trials, key=skew) if trials else None


def gradient_panels(
    results: Sequence[TrialResult], archs: Sequence[str], cache: DataCache, compute: bool
) -> tuple[list[GradientPanel], dict[str, str]]:
    """Per architecture, one trial's gradient diagnostics (see :func:`diagnostics_trial`).

    Stored ones (``extra["diagnostics"]["init"/"final"]``) first; else, if
    ``compute``, diagnostics at initialisation computed now on a freshly built
    model of the trial.

    Returns:
        The panels, and the errors of diagnostics that could not be computed
        (by ``"diagnostics (<arch>)"``).
    """
    out: list[GradientPanel] = []
    errors: dict[str, str] = {}
    for arch in archs:
        trials = [r for r in results if r.config.arch == arch]
        with_diag = [r for r in trials if (r.extra.get("diagnostics") or {})]
        chosen = diagnostics_trial(with_diag) or diagnostics_trial(trials)
        if chosen is None:
            continue
        cfg = chosen.config
        stored = chosen.extra.get("diagnostics") or {}
        found: list[tuple[Literal["init", "final"], Mapping[str, Any]]] = []
        for when in ("init", "final"):
            d = stored.get(when)
            if isinstance(d, dict) and d.get("layers"):
                found.append((when, d))
        source: Literal["stored", "computed"] = "stored"
        if not found and compute and not _is_lab_model(chosen):
            errors[f"diagnostics ({arch})"] = (
                f"{model_label(chosen)}: trained by a user train_stack, so the lab's own "
                f"{arch} model is not the one trained and no gradient figure is drawn for it"
            )
        elif not found and compute:
            data = cache.get(cfg)
            if data is not None:
                try:
                    # the trial's own weighting (class weights and loss) is resolved there
                    found.append(("init", diagnose.diagnostics_for_trial(cfg, data)))
                    source = "computed"
                except Exception as err:
                    errors[f"diagnostics ({arch})"] = f"{type(err).__name__}: {err}"
        out.extend(GradientPanel(arch, when, source, _label(cfg), cfg.optimizer, cfg.seed, d)
                   for when, d in found)  # fmt: skip
    return out, errors


def _tail_share(shares: Any, tail: Sequence[int]) -> float | None:
    """The tail's summed share per layer, averaged over the layers that have shares."""
    if not shares:
        return None
    rows = [sum(row[c] for c in tail) for row in shares if row and None not in row]
    return float(np.mean(rows)) if rows else None


def _has_updates(d: object) -> bool:
    """Whether a diagnostics dict holds update shares (stores before them hold none)."""
    return (
        isinstance(d, Mapping)
        and bool(d.get("layers"))
        and bool((d.get("update_shares") or {}).get("share"))
    )


def _with_updates(r: TrialResult, when: str) -> Mapping[str, Any] | None:
    """A trial's stored diagnostics at ``when`` if they hold update shares."""
    d = (r.extra.get("diagnostics") or {}).get(when)
    return d if _has_updates(d) else None


def update_transfer(
    results: Sequence[TrialResult],
    archs: Sequence[str],
    optimizers: Sequence[str],
    compute: Callable[[TrialResult], Mapping[str, Any] | None] | None = None,
) -> list[UpdateTransfer]:
    """Per (architecture, optimizer) cell, gradient against update shares of the tail classes.

    The cell's weighted trial is :func:`diagnostics_trial` of the trials with
    stored update shares (after training if any have them, else at
    initialisation), compared with the ``none`` trial of the same seed at the
    same moment. A cell that stored none gets, with ``compute`` (a trial's
    diagnostics at initialisation, e.g. :func:`weightlab.lab.diagnose.diagnostics_for_trial`;
    ``None`` where it cannot), those of its weighted trial and of that ``none``
    trial, which start from the same parameters. Without either, stores
    written before update shares give no rows.

    Example:
        >>> update_transfer([], ["mlp"], ["sgd"])
        []
    """
    out: list[UpdateTransfer] = []
    for arch in archs:
        for opt in optimizers:
            cell = [r for r in results if r.config.arch == arch and r.config.optimizer == opt]
            row = _transfer(cell, arch, opt, compute)
            if row is not None:
                out.append(row)
    return out


def _transfer(
    cell: Sequence[TrialResult],
    arch: str,
    opt: str,
    compute: Callable[[TrialResult], Mapping[str, Any] | None] | None,
) -> UpdateTransfer | None:
    """:func:`update_transfer`'s row of one cell, or ``None``."""

    def none_of(trial: TrialResult) -> TrialResult | None:
        return next((r for r in cell if r.config.weighting == "none"
                     and r.config.seed == trial.config.seed), None)  # fmt: skip

    found = None
    for when in ("final", "init"):
        have = [r for r in cell if r.config.weighting != "none" and _with_updates(r, when)]
        chosen = diagnostics_trial(have)
        if chosen is not None:
            base = none_of(chosen)
            found = (chosen, when, "stored", _with_updates(chosen, when),
                     None if base is None else _with_updates(base, when))  # fmt: skip
            break
    if found is None and compute is not None:
        chosen = diagnostics_trial([r for r in cell if r.config.weighting != "none"])
        if chosen is not None:
            base = none_of(chosen)
            found = (chosen, "init", "computed", compute(chosen),
                     None if base is None else compute(base))  # fmt: skip
    if found is None or not _has_updates(found[3]):
        return None
    trial, when, source, d, d0 = found
    assert d is not None
    mass, mass0 = d.get("loss_mass") or [], d.get("loss_mass_unweighted") or []
    tail = [c for c, (a, b) in enumerate(zip(mass, mass0, strict=False)) if a > b + 1e-12]
    u = d["update_shares"]
    gw, gu = _tail_share(d["share_weighted"], tail), _tail_share(d["share_unweighted"], tail)
    uw = _tail_share(u["share"], tail)
    if not tail or gw is None or gu is None or uw is None:
        return None
    g0 = u0 = reached = None
    if d0 is not None and _has_updates(d0):
        g0 = _tail_share(d0["share_weighted"], tail)
        u0 = _tail_share(d0["update_shares"]["share"], tail)
    if g0 is not None and u0 is not None and abs(gw - g0) >= 1e-3:
        reached = (uw - u0) / (gw - g0)
    return UpdateTransfer(
        arch, opt, _label(trial.config), trial.config.seed, when, source,  # type: ignore[arg-type]
        tail, gu, gw, uw, g0, u0, reached,
        str(u.get("optimizer", "")), str(u.get("preconditioner", "")),
    )  # fmt: skip


def _init_diagnostics(cache: DataCache) -> Callable[[TrialResult], Mapping[str, Any] | None]:
    """A lab trial's diagnostics at initialisation, ``None`` for a user model or on an error."""

    def compute(r: TrialResult) -> Mapping[str, Any] | None:
        data = cache.get(r.config) if _is_lab_model(r) else None
        if data is None:
            return None
        try:
            return diagnose.diagnostics_for_trial(r.config, data)
        except Exception:  # shown as a missing row; gradient_panels reports its errors
            return None

    return compute


def failures(results: Iterable[TrialResult]) -> list[FailedTrial]:
    """Every trial stored as failed, in store order."""
    return [FailedTrial(r.config.trial_id, r.config.arch, r.config.optimizer, _label(r.config),
                        r.config.seed, r.reason)
            for r in results if r.status == "failed"]  # fmt: skip


def model_uses(results: Iterable[TrialResult]) -> list[ModelUse]:
    """Each architecture's distinct model options and the weightings trained with them."""
    used: dict[tuple[str, str], tuple[tuple[tuple[str, Any], ...], set[str]]] = {}
    for r in results:
        cfg = r.config
        entry = used.setdefault((cfg.arch, repr(cfg.model_params)), (cfg.model_params, set()))
        entry[1].add(cfg.weighting)
    return [ModelUse(arch, params, frozenset(ws)) for (arch, _), (params, ws) in used.items()]


# -- all of it ---------------------------------------------------------------------------


def analyze(
    store: ResultStore, *, metric: str | None = None, diagnostics: bool = True
) -> ReportAnalysis:
    """Every number the report shows, read from ``store`` (and data reloaded deterministically).

    Args:
        store: a study's result store.
        metric: the metric to rank by (default: the study's, else ``balanced_accuracy``).
        diagnostics: compute gradient diagnostics at initialisation for architectures
            whose trials carry none (one small forward/backward per class).

    Example:
        >>> from weightlab.lab.store import MemoryStore
        >>> a = analyze(MemoryStore())
        >>> a.metric, a.n_trials, a.calibration, a.gradients
        ('balanced_accuracy', 0, [], [])
    """
    meta = store.meta()
    spec = meta.get("spec") or {}
    metric = metric or spec.get("metric") or "balanced_accuracy"
    results = list(store.results())
    done = [r for r in results if r.status == "done"]
    summary = summarize(results, metric) if metric in HIGHER_IS_BETTER else None
    cache = DataCache()
    data = data_info(meta, results, cache)
    archs = order({r.config.arch for r in results}, ARCHITECTURES.names())
    opts = order({r.config.optimizer for r in results}, OPTIMIZERS)
    calib = [c for c in (calibration(done, arch, metric, cache) for arch in archs) if c]
    if summary is not None:
        calib = [replace(c, best=arch_best(summary, c.arch)) for c in calib]
    cells = cell_details(summary, done, cache) if summary is not None else []
    # The data errors shown are those of the sections above (not of the diagnostics below).
    data_errors = dict(cache.errors)
    gradients, diag_errors = gradient_panels(results, archs, cache, diagnostics)
    updates = update_transfer(
        results, archs, opts, _init_diagnostics(cache) if diagnostics else None
    )
    return ReportAnalysis(
        metric=metric,
        higher_is_better=HIGHER_IS_BETTER.get(metric, True),
        n_trials=len(results),
        n_done=len(done),
        n_failed=sum(1 for r in results if r.status == "failed"),
        n_pruned=sum(1 for r in results if r.status not in ("done", "failed")),
        archs=archs,
        optimizers=opts,
        data=data,
        summary=summary,
        best=best_per_cell(summary) if summary is not None else [],
        weights=scheme_weights(data.train_counts, power_alphas(results)),
        strength=strength_sweep(done, metric, archs, opts),
        recall={arch: rec for arch in archs if (rec := mean_recall(done, arch))},
        calibration=calib,
        data_errors=data_errors,
        gradients=gradients,
        diagnostics_errors=diag_errors,
        failures=failures(results),
        models=model_uses(results),
        spec=spec,
        command=meta.get("command"),
        versions=dict(meta.get("versions") or {}),
        cells=cells,
        updates=updates,
    )
