"""What a study's results say: per-cell rankings of the weightings and a plain answer.

:func:`summarize` reads results (from the store) and ranks the weightings of
every (data, arch, optimizer) cell by a metric, then answers the lab's
question from the numbers: does the same weight act the same in every network?
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from weightlab.errors import InvalidValueError, expected, names
from weightlab.lab.architectures import ARCHITECTURES
from weightlab.lab.metrics import HIGHER_IS_BETTER, METRIC_NAMES
from weightlab.lab.optim import OPTIMIZERS
from weightlab.lab.trial import TrialResult
from weightlab.lab.weightings import weighting_label

__all__ = ["CellSummary", "Summary", "WeightingStats", "summarize"]


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
    archs = ARCHITECTURES.names()
    cells.sort(key=lambda c: (c.data, _order(c.arch, archs), _order(c.optimizer, OPTIMIZERS)))
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
