"""Lay out a study's report: figures, formatted numbers and jinja2, from its analysis.

:func:`weightlab.report.analysis.analyze` reads every number the report shows
from the store (and the data reloaded deterministically, see there);
:func:`build_context` lays it out for the template: the figures as inline SVG
(:mod:`weightlab.report.figures`), the numbers as strings, the rows in the
order the report shows them. :func:`render_html` renders that context with
jinja2 (autoescape on: every string from the data is escaped),
:func:`render_report` does both for a store, and :func:`write_report` writes
the HTML to a file.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from weightlab.lab.store import ResultStore
from weightlab.report import figures
from weightlab.report.analysis import (
    TAU,
    ArchCalibration,
    CellBest,
    CellDetail,
    DataInfo,
    GradientPanel,
    ModelUse,
    ReportAnalysis,
    StrengthSweep,
    UpdateTransfer,
    analyze,
    weighting_order,
)

__all__ = ["build_context", "render_html", "render_report", "write_report"]

_WHEN = {"init": "at initialisation", "final": "after training"}
#: The leaderboard's mark of each entry against the cell's chosen (validation-best) one.
_MARK = {
    "chosen": "★ chosen",
    "tie": "≈ tie",
    "worse": "▼ worse",
    "better on test": "▲ better on test",
}
_SOURCE = {
    "stored": "stored by the engine",
    "computed": "computed for this report on a freshly initialised model",
}


def _fmt(v: float | None, signed: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def _names(class_names: Sequence[str], n: int) -> list[str]:
    """The class names if there are ``n`` of them, else the indices ``0 .. n-1``."""
    return list(class_names) if len(class_names) == n else [str(c) for c in range(n)]


def build_context(
    store: ResultStore, *, metric: str | None = None, diagnostics: bool = True
) -> dict[str, Any]:
    """Everything the template shows, figures as SVG strings, computed from ``store``.

    Args:
        store: a study's result store.
        metric: the metric to rank by (default: the study's, else ``balanced_accuracy``).
        diagnostics: compute gradient diagnostics at initialisation for architectures
            whose trials carry none (one small forward/backward per class).
    """
    from weightlab.report.tuning import tuning_context

    ctx = _layout(analyze(store, metric=metric, diagnostics=diagnostics))
    ctx["tuning"] = tuning_context(store.get_meta("tune"))
    return ctx


def _layout(a: ReportAnalysis) -> dict[str, Any]:
    """The template's context for an analysis: formatted rows and figures, in report order."""
    figs: dict[str, str] = {}
    name = a.data.name or a.spec.get("data")
    ctx: dict[str, Any] = {
        "title": f"weightlab study: {name or 'results'}",
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "metric": a.metric,
        "higher_is_better": a.higher_is_better,
        "n_trials": a.n_trials,
        "n_done": a.n_done,
        "n_failed": a.n_failed,
        "n_pruned": a.n_pruned,
        "archs": a.archs,
        "optimizers": a.optimizers,
        "figures": figs,
        "strength_metrics": [],
    }
    _answer(a, ctx, figs)
    ctx["data"] = _data(a.data, a.spec)
    if a.data.train_counts:
        figs["classes"] = figures.bar_log("fig-classes", a.data.class_names, a.data.train_counts,
                                          ylabel="training examples")  # fmt: skip
    if a.weights:
        figs["weights"] = figures.weights_bars("fig-weights", a.data.class_names, a.weights)
    ctx["weights"] = {
        "schemes": list(a.weights),
        "rows": [(name, [f"{w[i]:.3g}" for w in a.weights.values()])
                 for i, name in enumerate(a.data.class_names)],
    }  # fmt: skip
    if a.strength is not None:
        _strength(a.strength, a.archs, a.optimizers, figs)
        ctx["strength_metrics"] = a.strength.metrics
    ctx["per_class"] = [
        (arch, _recall_figure(arch, rows, a.data.class_names)) for arch, rows in a.recall.items()
    ]
    ctx["cells"] = [_cell(c, a) for c in a.cells]
    panels, ctx["calibration_rows"] = _calibration(a.calibration, a.best)
    if panels:
        figs["reliability"] = figures.reliability("fig-reliability", panels)
    ctx["data_errors"] = dict(a.data_errors)
    ctx["gradients"] = [_gradient(g, a.data.class_names) for g in a.gradients]
    ctx["updates"] = [_update_row(u, a.data.class_names) for u in a.updates]
    ctx["failures"] = [
        {"trial_id": f.trial_id, "arch": f.arch, "optimizer": f.optimizer,
         "weighting": f.weighting, "seed": f.seed, "reason": f.reason}
        for f in a.failures
    ]  # fmt: skip
    ctx["models"] = _model_rows(a.models)
    command = a.command
    ctx["command"] = " ".join(command) if isinstance(command, list) else (command or "")
    ctx["versions"] = sorted((str(k), str(v)) for k, v in a.versions.items())
    ctx["spec"] = json.dumps(a.spec, indent=2, sort_keys=True) if a.spec else ""
    return ctx


def _answer(a: ReportAnalysis, ctx: dict[str, Any], figs: dict[str, str]) -> None:
    """First screen: the answer, the best weighting per cell, the gain heatmap; the leaderboard."""
    if a.summary is None:
        ctx["answer"] = f"The metric {a.metric!r} is not one the lab computes."
        ctx["leaderboard"] = []
        ctx["best_rows"] = []
        return
    ctx["answer"] = a.summary.answer
    ctx["best_rows"] = [_best_row(b) for b in a.best]
    ctx["leaderboard"] = [
        {**row, "mean": _fmt(row["mean"]), "std": _fmt(row["std"]),
         "gain_vs_none": _fmt(row["gain_vs_none"], True),
         "ci": (f"[{_fmt(row['gain_low'], True)}, {_fmt(row['gain_high'], True)}]"
                if row["gain_low"] is not None else "–"),
         "val": _fmt(row["val_mean"]), "p_best": _fmt(row["p_best"]),
         "mark": _MARK.get(row["mark"], ""),
         "rank": row["rank"] or "–"}
        for row in a.summary.detail_rows()
    ]  # fmt: skip
    ctx["selection"] = a.summary.selection
    ctx["interval"] = a.summary.interval
    ctx["undertrained"] = [f"{c.arch}/{c.optimizer}" for c in a.summary.cells if c.undertrained]
    cols = weighting_order(w.weighting for c in a.summary.cells for w in c.ranking)
    matrix = [[b.gains.get(w) for w in cols] for b in a.best]
    if matrix and any(v is not None for r in matrix for v in r):
        rows = [f"{b.arch}/{b.optimizer}" for b in a.best]
        figs["gain"] = figures.gain_heatmap("fig-gain", matrix, rows, cols)


def _best_row(b: CellBest) -> dict[str, Any]:
    return {
        "arch": b.arch, "optimizer": b.optimizer, "best": b.best,
        "mean": _fmt(b.mean), "std": _fmt(b.std), "n": b.n, "gain": _fmt(b.gain, True),
        "runner_up": b.runner_up if b.runner_up is not None else "–",
        "margin": _fmt(b.margin), "spread": _fmt(b.spread),
    }  # fmt: skip


def _cell(c: CellDetail, a: ReportAnalysis) -> dict[str, Any]:
    """One cell's figure (curves, confusion, per-class scores, PR) and its caption facts."""
    k = len(next(iter(c.confusion.values()), [])) or len(a.data.class_names)
    names = _names(a.data.class_names, k)
    fig_id = f"fig-cell-{c.arch}-{c.optimizer}"
    svg = figures.cell_panels(fig_id, names, a.data.train_counts, c.shown, c.train_loss,
                              c.val_metric, c.confusion, c.precision, c.recall, c.pr,
                              metric=a.metric)  # fmt: skip
    last = {w: (len(v), int(np.argmax(v)) + 1) for w, v in c.val_metric.items() if v}
    return {
        "arch": c.arch,
        "optimizer": c.optimizer,
        "label": c.label,
        "shown": c.shown,
        "undertrained": c.undertrained,
        "svg": svg,
        "id": fig_id,
        "binary": bool(c.pr),
        "peak": ", ".join(f"{w}: epoch {p} of {n}" for w, (n, p) in last.items()),
    }


def _data(d: DataInfo, spec: dict[str, Any]) -> dict[str, Any]:
    counts = d.train_counts
    return {
        "name": d.name or spec.get("data", ""),
        "classes": len(d.class_names),
        "imbalance": f"{max(counts) / min(counts):.3g}" if counts and min(counts) > 0 else "–",
        "n_train": "–" if d.n_train is None else d.n_train,
        "n_val": "–" if d.n_val is None else d.n_val,
        "n_test": "–" if d.n_test is None else d.n_test,
        "rows": list(zip(d.class_names, counts, strict=False)),
    }


def _strength(
    s: StrengthSweep, archs: Sequence[str], opts: Sequence[str], figs: dict[str, str]
) -> None:
    """The strength sweep twice: a panel per optimizer, then a panel per architecture."""
    by_opt: dict[tuple[str, str, str], Any] = {}
    by_arch: dict[tuple[str, str, str], Any] = {}
    for (m, arch, opt), c in s.curves.items():
        curve = (c.alpha, c.mean, c.low, c.high)
        by_opt[(m, opt, arch)] = curve
        by_arch[(m, arch, opt)] = curve
    figs["strength"] = figures.strength_curves(
        "fig-strength", opts, s.metrics, by_opt, archs, panel_name="optimizer",
        line_name="architecture",
    )  # fmt: skip
    figs["strength_t"] = figures.strength_curves(
        "fig-strength-t", archs, s.metrics, by_arch, opts, panel_name="architecture",
        line_name="optimizer",
    )  # fmt: skip


def _recall_figure(arch: str, rows: dict[str, list[float]], class_names: Sequence[str]) -> str:
    """Heatmap of test recall, a row per weighting (in weighting order), a column per class."""
    order = weighting_order(rows)
    mat = [rows[w] for w in order]
    return figures.heatmap(f"fig-recall-{arch}", mat, order, _names(class_names, len(mat[0])),
                           xlabel="class", title=f"{arch}: test recall")  # fmt: skip


def _calibration(
    calib: Sequence[ArchCalibration], best: Sequence[CellBest]
) -> tuple[list[tuple[str, list[tuple[str, list[float], list[float]]]]], list[dict[str, Any]]]:
    """Reliability panels and the table's rows.

    Each panel shows ``none``, the architecture's best weighting (the best mean
    validation score over its cells, :func:`~weightlab.report.analysis.arch_best`;
    else the last weighting in order) and ``none`` adjusted post hoc.
    """
    panels, rows = [], []
    for c in calib:
        order = weighting_order(c.reliability)
        shown = [w for w in order if w == "none"]
        best_cell = c.best
        others = [w for w in order if w != "none"]
        if best_cell is not None and best_cell in others:
            shown.append(best_cell)
        elif others:
            shown.append(others[-1])
        lines = [(f"{w} (trained)", c.reliability[w].confidence, c.reliability[w].accuracy)
                 for w in shown]  # fmt: skip
        if c.adjusted is not None:
            lines.append((f"none + logit adjustment (tau={TAU:g})", c.adjusted.confidence,
                          c.adjusted.accuracy))  # fmt: skip
        panels.append((c.arch, lines))
        for w in order:
            s = c.trained[w]
            rows.append({"arch": c.arch, "method": f"trained with {w}",
                         "metric": _fmt(s.metric), "ece": _fmt(s.ece), "n": s.n})  # fmt: skip
        if c.adjusted_score is not None:
            s = c.adjusted_score
            rows.append({
                "arch": c.arch, "method": f"none + logit adjustment (tau={TAU:g}, post hoc)",
                "metric": _fmt(s.metric), "ece": _fmt(s.ece), "n": s.n,
            })  # fmt: skip
    return panels, rows


def _gradient(g: GradientPanel, class_names: Sequence[str]) -> dict[str, Any]:
    """One gradient-shares figure (with update shares where stored) and what its caption says."""
    d = g.diagnostics
    classes = d["classes"]
    names = list(class_names) if len(class_names) == len(classes) else [str(c) for c in classes]
    fig_id = f"fig-grad-{g.arch}-{g.when}"
    upd = d.get("update_shares") or {}  # stores written before update shares hold none
    share = upd.get("share")
    svg = figures.gradient_shares(
        fig_id,
        d["layers"], names, d["share_unweighted"], d["share_weighted"],
        d.get("loss_mass_unweighted") or [0.0] * len(names), d["loss_mass"],
        update=share, update_label=str(upd.get("optimizer", g.optimizer)),
    )  # fmt: skip
    if share:
        source = _PRECONDITIONER.get(str(upd.get("preconditioner")), "its state")
        update = f"update shares under {upd.get('optimizer')}, preconditioner from {source}"
    elif upd.get("missing"):
        update = f"no update shares: {upd['missing']}"
    else:
        update = "no update shares stored"
    return {"arch": g.arch, "when": _WHEN[g.when], "weighting": g.weighting,
            "optimizer": g.optimizer, "seed": g.seed, "source": _SOURCE[g.source],
            "svg": svg, "id": fig_id, "update": update}  # fmt: skip


#: What each ``update_shares["preconditioner"]`` says, for a caption.
_PRECONDITIONER = {
    "identity": "none (SGD: the update follows the gradient)",
    "state": "the optimizer's state at the end of training",
    "first step": "the first step (no state yet: Adam's |g| + eps, RMSprop's)",
    "mixed": "its state where it has stepped, the first step elsewhere",
}


def _update_row(u: UpdateTransfer, class_names: Sequence[str]) -> dict[str, str]:
    """One row of the table of how much of a weighting's push reaches the parameters."""
    names = list(class_names)
    tail = ", ".join(names[c] if c < len(names) else str(c) for c in u.tail)
    return {
        "arch": u.arch, "optimizer": u.optimizer, "weighting": u.weighting, "seed": str(u.seed),
        "when": _WHEN[u.when] + ("" if u.source == "stored" else " (computed)"), "tail": tail,
        "grad": f"{_fmt(u.grad_unweighted)} → {_fmt(u.grad_weighted)}",
        "grad_none": _fmt(u.grad_none), "update_none": _fmt(u.update_none),
        "update": _fmt(u.update_weighted), "reached": _fmt(u.reached),
        "preconditioner": u.preconditioner,
    }  # fmt: skip


def _model_rows(models: Sequence[ModelUse]) -> list[dict[str, str]]:
    """Each architecture's model options (size, head) and the weightings trained with them."""
    used: dict[tuple[str, str], set[str]] = {}
    for m in models:
        options = ", ".join(f"{k}={v}" for k, v in m.params) or "defaults"
        used.setdefault((m.arch, options), set()).update(m.weightings)
    return [
        {"arch": arch, "options": options, "weightings": ", ".join(sorted(ws))}
        for (arch, options), ws in sorted(used.items())
    ]


def render_html(context: dict[str, Any]) -> str:
    """Render a :func:`build_context` dict with the template (jinja2, autoescape on)."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("weightlab.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Figures are SVG that matplotlib produced and escaped; they are the only markup let through.
    ctx = dict(context)
    ctx["figures"] = {k: Markup(v) for k, v in ctx["figures"].items()}
    ctx["per_class"] = [(a, Markup(s)) for a, s in ctx["per_class"]]
    ctx["gradients"] = [{**g, "svg": Markup(g["svg"])} for g in ctx["gradients"]]
    ctx["cells"] = [{**c, "svg": Markup(c["svg"])} for c in ctx.get("cells", [])]
    tuning = ctx.get("tuning")
    if tuning:
        ctx["tuning"] = {**tuning, "cells": [
            {**c, "figures": {k: Markup(v) for k, v in c["figures"].items()}}
            for c in tuning["cells"]
        ]}  # fmt: skip
    ctx.setdefault("tuning", None)
    return env.get_template("report.html.j2").render(**ctx)


def render_report(
    store: ResultStore, *, metric: str | None = None, diagnostics: bool = True
) -> str:
    """The report of ``store`` as one self-contained HTML string (see :func:`build_context`)."""
    return render_html(build_context(store, metric=metric, diagnostics=diagnostics))


def write_report(
    store: ResultStore | str | Path,
    path: str | Path,
    *,
    metric: str | None = None,
    diagnostics: bool = True,
) -> Path:
    """Write the HTML report of ``store`` (a store, or a SQLite store's path) to ``path``.

    A path is opened with ``open_store(store, create=False)``
    (:func:`weightlab.lab.stores.open_store`): the store must exist.

    Returns:
        The path written.
    """
    out = Path(path)
    if isinstance(store, ResultStore):
        html = render_report(store, metric=metric, diagnostics=diagnostics)
    else:
        from weightlab.lab.stores import open_store

        with open_store(store, create=False) as s:
            html = render_report(s, metric=metric, diagnostics=diagnostics)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
