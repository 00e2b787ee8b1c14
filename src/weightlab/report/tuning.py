"""The report's tuning section, from a tuning store's ``"tune"`` metadata (``weightlab tune``).

Per cell: the optimization history (each trial's validation value, pruned
and failed ones marked, the best so far as a line), Optuna's parameter
importances, the Pareto front when several metrics were optimised, the
chosen configuration's class weights against the class frequencies, and the
judged table (test mean and spread over the judging seeds, paired gains over
``none`` and ``balanced`` with their 95 % intervals).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from weightlab.report import figures

__all__ = ["tuning_context"]


def _history(salt: str, history: Sequence[Sequence[Any]], maximize: bool, metric: str) -> str:
    fig, ax = figures._figure(5.2, 3.0)
    ax = ax[0, 0]
    done = [(n, v) for n, v, s in history if s == "complete" and v is not None]
    pruned = [(n, v) for n, v, s in history if s == "pruned" and v is not None]
    failed = [n for n, v, s in history if s == "fail"]
    if done:
        ax.scatter(*zip(*done, strict=True), s=14, color=figures._PALETTE[0], label="complete")
        order = sorted(done)
        best = np.maximum.accumulate if maximize else np.minimum.accumulate
        ax.step(
            [n for n, _ in order],
            best([v for _, v in order]),
            where="post",
            color="black",
            lw=1,
            label="best so far",
        )
    if pruned:
        ax.scatter(
            *zip(*pruned, strict=True),
            s=12,
            marker="x",
            color=figures._PALETTE[3],
            label="pruned (last value)",
        )
    for n in failed:
        ax.axvline(n, color=figures._PALETTE[1], alpha=0.25, lw=0.8)
    ax.set_xlabel("trial number" + (" (failed: shaded)" if failed else ""))
    ax.set_ylabel(figures.label(f"validation {metric}"))
    ax.legend(fontsize=7, frameon=False)
    ax.grid(alpha=0.3)
    return figures._svg(fig, salt)


def _importances(salt: str, importances: Mapping[str, float]) -> str:
    items = sorted(importances.items(), key=lambda kv: kv[1])[-10:]
    fig, ax = figures._figure(4.6, 0.28 * len(items) + 1.0)
    ax = ax[0, 0]
    ax.barh([figures.label(k) for k, _ in items], [v for _, v in items], color=figures._PALETTE[2])
    ax.set_xlabel("importance (Optuna's default evaluator)")
    ax.grid(axis="x", alpha=0.3)
    return figures._svg(fig, salt)


def _pareto(salt: str, front: Sequence[Sequence[float]], metrics: Sequence[str]) -> str:
    fig, ax = figures._figure(4.2, 3.2)
    ax = ax[0, 0]
    pts = np.array(sorted(tuple(p) for p in front))
    ax.plot(pts[:, 0], pts[:, 1], "o-", color=figures._PALETTE[0], ms=4)
    ax.set_xlabel(figures.label(f"validation {metrics[0]}"))
    ax.set_ylabel(figures.label(f"validation {metrics[1]}"))
    ax.grid(alpha=0.3)
    return figures._svg(fig, salt)


def _weights(
    salt: str,
    names: Sequence[str],
    weights: Mapping[str, float],
    counts: Sequence[int],
    late: Mapping[str, float] | None,
) -> str:
    fig, ax = figures._figure(max(5.0, 0.5 * len(names) + 2.5), 3.2)
    ax = ax[0, 0]
    x = np.arange(len(names))
    width = 0.4 if late else 0.7
    ax.bar(
        x - (width / 2 if late else 0),
        [weights[n] for n in names],
        width,
        color=figures._PALETTE[0],
        label="class weight",
    )
    if late:
        ax.bar(
            x + width / 2,
            [late[n] for n in names],
            width,
            color=figures._PALETTE[1],
            label="after deferred re-weighting",
        )
    ax.set_ylabel("class weight (mean 1)")
    ax.set_xticks(x, [figures.label(n) for n in names], rotation=45 if len(names) > 8 else 0)
    twin = ax.twinx()
    twin.plot(x, counts, "k.--", lw=0.8, label="training examples")
    twin.set_yscale("log")
    twin.set_ylabel("training examples (log)")
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return figures._svg(fig, salt)


def _gain(g: Sequence[float] | None) -> str:
    if not g:
        return ""
    est, low, high = g
    if not math.isfinite(low):
        return f"{est:+.3f} (one seed)"
    return f"{est:+.3f} [{low:+.3f}, {high:+.3f}]"


def tuning_context(meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The template's ``tuning`` context from the store's ``"tune"`` metadata (``None``: none).

    Example:
        >>> tuning_context(None) is None
        True
    """
    if not meta:
        return None
    spec = meta["spec"]
    metrics = list(spec["metrics"])
    maximize = metrics[0] != "ece"
    names = list(meta.get("class_names") or [])
    counts = list(meta.get("train_counts") or [])
    cells = []
    for i, cell in enumerate(meta["cells"]):
        salt = f"tune-{i}"
        figs = {"history": _history(f"{salt}-history", cell["history"], maximize, metrics[0])}
        if cell.get("importances"):
            figs["importances"] = _importances(f"{salt}-imp", cell["importances"])
        if cell.get("pareto") and len(metrics) >= 2:
            figs["pareto"] = _pareto(f"{salt}-pareto", cell["pareto"], metrics)
        chosen = next((j for j in cell["judged"] if j["role"] == "chosen"), None)
        if chosen and names and counts:
            figs["weights"] = _weights(
                f"{salt}-weights",
                names,
                chosen["class_weight"],
                counts,
                chosen.get("late_class_weight"),
            )
        rows = [
            {
                "role": j["role"],
                "label": j["label"],
                "val": "/".join(f"{v:.3f}" for v in j["val"]) if j.get("val") else "",
                "test": f"{j['mean']:.3f}"
                + ("" if j["std"] is None or math.isnan(j["std"]) else f" ± {j['std']:.3f}"),
                "gain_none": _gain(j.get("gain_vs_none")),
                "gain_balanced": _gain(j.get("gain_vs_balanced")),
            }
            for j in cell["judged"]
        ]
        cells.append(
            {
                "cell": cell["cell"],
                "trials": cell["trials"],
                "done": cell["done"],
                "pruned": cell["pruned"],
                "failed": cell["failed"],
                "engine": cell.get("engine", ""),
                "rows": rows,
                "loss": chosen["loss"] if chosen else "",
                "figures": figs,
            }
        )
    return {
        "metrics": metrics,
        "sampler": spec["sampler"],
        "pruner": spec["pruner"] if len(metrics) == 1 else "none (several objectives)",
        "batch": spec["batch"],
        "budget": spec["trials"],
        "judge_seeds": list(spec["judge_seeds"]),
        "saving": f"{meta.get('pruning_saving', 0.0):.0%}",
        "seconds": f"{meta.get('seconds', 0.0):.1f}",
        "cells": cells,
    }
