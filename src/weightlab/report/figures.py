"""The report's figures: matplotlib (Agg) drawn to standalone inline SVG strings.

Every function takes plain numbers and labels and returns one ``<svg>``
element as a string. Text is kept as SVG ``<text>`` (``svg.fonttype="none"``),
which matplotlib XML-escapes, so a class named ``<script>`` is shown as text;
``$`` is escaped so that no label is read as mathtext. Element ids get a
per-figure salt, so several figures can share one HTML page.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "bar_log",
    "cell_panels",
    "gain_heatmap",
    "gradient_shares",
    "heatmap",
    "reliability",
    "strength_curves",
    "weights_bars",
]

_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf"]  # fmt: skip


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def label(text: object) -> str:
    r"""A data string as matplotlib text: ``$`` escaped so it is never mathtext.

    Example:
        >>> print(label("cost $5"))
        cost \$5
    """
    return str(text).replace("$", r"\$")


def _svg(fig: Any, salt: str) -> str:
    plt = _plt()
    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    start = text.find("<svg")
    svg = text[start:]
    # ids are unique per figure (salted hashes), but matplotlib's plain ids ("patch_1")
    # repeat between figures: prefix every id and its references with the salt.
    svg = re.sub(r'id="([^"]+)"', lambda m: f'id="{salt}-{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{salt}-{m.group(1)})", svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{salt}-{m.group(1)}"', svg)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{salt}" ', 1)


def _figure(w: float, h: float, nrows: int = 1, ncols: int = 1, **kw: Any) -> tuple[Any, Any]:
    plt = _plt()
    fig, axes = plt.subplots(nrows, ncols, figsize=(w, h), squeeze=False, **kw)
    return fig, axes


def bar_log(salt: str, names: Sequence[str], values: Sequence[float], *, ylabel: str) -> str:
    """Bars of ``values`` per class on a log scale (the class distribution)."""
    fig, ax = _figure(max(4.0, 0.35 * len(names) + 2), 3.0)
    ax = ax[0, 0]
    x = np.arange(len(names))
    ax.bar(x, [max(v, 1e-12) for v in values], color=_PALETTE[0])
    ax.set_yscale("log")
    ax.set_xticks(x, [label(n) for n in names], rotation=45 if len(names) > 8 else 0, ha="right"
                  if len(names) > 8 else "center")  # fmt: skip
    ax.set_ylabel(label(ylabel))
    ax.set_xlabel("class")
    ax.grid(axis="y", alpha=0.3)
    return _svg(fig, salt)


def weights_bars(salt: str, names: Sequence[str], weights: Mapping[str, Sequence[float]]) -> str:
    """Grouped bars: the weight of each class (x) under each scheme (colour), log scale."""
    fig, ax = _figure(max(6.0, 0.6 * len(names) + 3), 3.4)
    ax = ax[0, 0]
    k = max(1, len(weights))
    width = 0.8 / k
    x = np.arange(len(names))
    for i, (scheme, w) in enumerate(weights.items()):
        vals = [v if (v > 0 and math.isfinite(v)) else np.nan for v in w]
        ax.bar(x - 0.4 + width * (i + 0.5), vals, width, label=label(scheme),
               color=_PALETTE[i % len(_PALETTE)])  # fmt: skip
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", lw=0.6)
    ax.set_xticks(x, [label(n) for n in names], rotation=45 if len(names) > 8 else 0)
    ax.set_xlabel("class")
    ax.set_ylabel("class weight (mean 1)")
    ax.legend(fontsize=7, ncol=min(4, k), loc="upper left", frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _svg(fig, salt)


def heatmap(
    salt: str,
    matrix: Sequence[Sequence[float | None]],
    rows: Sequence[str],
    cols: Sequence[str],
    *,
    title: str = "",
    xlabel: str = "",
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "viridis",
    annotate: bool = True,
    ax: Any = None,
) -> str:
    """A labelled heatmap with the value written in each cell (``None`` cells blank)."""
    own = ax is None
    if own:
        fig, axes = _figure(max(4.0, 0.55 * len(cols) + 2.5), max(2.0, 0.35 * len(rows) + 1.2))
        ax = axes[0, 0]
    m = np.array([[np.nan if v is None else float(v) for v in r] for r in matrix], dtype=float)
    im = ax.imshow(m, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(cols)), [label(c) for c in cols], rotation=45 if len(cols) > 6 else 0,
                  fontsize=7)  # fmt: skip
    ax.set_yticks(range(len(rows)), [label(r) for r in rows], fontsize=7)
    if title:
        ax.set_title(label(title), fontsize=9)
    if xlabel:
        ax.set_xlabel(label(xlabel), fontsize=8)
    if annotate and m.size <= 400:
        mid = (vmin + vmax) / 2
        for (i, j), v in np.ndenumerate(m):
            if math.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if v < mid else "black")  # fmt: skip
    if own:
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        return _svg(fig, salt)
    return ""


def gain_heatmap(
    salt: str, matrix: Sequence[Sequence[float | None]], rows: Sequence[str], cols: Sequence[str]
) -> str:
    """Gain over ``none`` per (arch/optimizer) row and weighting column, diverging colours."""
    vals = [abs(v) for r in matrix for v in r if v is not None and math.isfinite(v)]
    lim = max(vals) if vals else 1.0
    lim = lim or 1.0
    fig, axes = _figure(max(4.5, 0.8 * len(cols) + 2.5), max(2.0, 0.32 * len(rows) + 1.3))
    ax = axes[0, 0]
    heatmap(salt, matrix, rows, cols, vmin=-lim, vmax=lim, cmap="RdBu", ax=ax,
            xlabel="weighting")  # fmt: skip
    # Diverging map: dark at both ends, so write every value in black on a light box.
    for t in ax.texts:
        t.set_color("black")
        t.set_bbox({"facecolor": "white", "alpha": 0.6, "lw": 0, "pad": 0.5})
    fig.colorbar(ax.images[0], ax=ax, fraction=0.046, pad=0.02)
    return _svg(fig, salt)


def strength_curves(
    salt: str,
    panels: Sequence[str],
    metrics: Sequence[str],
    curves: Mapping[
        tuple[str, str, str], tuple[list[float], list[float], list[float], list[float]]
    ],
    lines: Sequence[str],
    *,
    panel_name: str,
    line_name: str,
) -> str:
    """Metric against alpha: a row per metric, a panel per ``panels`` entry, a line per ``lines``.

    ``curves[(metric, panel, line)] = (alphas, mean, low, high)``; the band is ``low``-``high``.
    """
    ncols = max(1, len(panels))
    fig, axes = _figure(3.0 * ncols + 0.6, 2.5 * len(metrics), len(metrics), ncols,
                        sharex=True, sharey="row")  # fmt: skip
    for r, metric in enumerate(metrics):
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            for i, line in enumerate(lines):
                got = curves.get((metric, panel, line))
                if not got or not got[0]:
                    continue
                a, mean, lo, hi = got
                color = _PALETTE[i % len(_PALETTE)]
                ax.plot(a, mean, marker="o", ms=3, color=color, label=label(line))
                ax.fill_between(a, lo, hi, color=color, alpha=0.18, lw=0)
            if r == 0:
                ax.set_title(label(f"{panel_name} = {panel}"), fontsize=9)
            if c == 0:
                ax.set_ylabel(label(metric))
            if r == len(metrics) - 1:
                ax.set_xlabel("alpha (weight ~ n_c^-alpha)")
            ax.grid(alpha=0.3)
    handles, labels_ = axes[0, 0].get_legend_handles_labels()
    for ax in axes.flat:
        h, lab = ax.get_legend_handles_labels()
        if len(h) > len(handles):
            handles, labels_ = h, lab
    if handles:
        fig.legend(handles, labels_, title=label(line_name), loc="upper right", fontsize=7,
                   title_fontsize=7, frameon=False, bbox_to_anchor=(1.0, 1.0))  # fmt: skip
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    return _svg(fig, salt)


def reliability(
    salt: str,
    panels: Sequence[tuple[str, Sequence[tuple[str, Sequence[float], Sequence[float]]]]],
) -> str:
    """Reliability diagrams: per panel, accuracy against mean confidence per bin, one line each.

    ``panels = [(title, [(line label, confidences per bin, accuracies per bin), ...]), ...]``.
    """
    n = max(1, len(panels))
    fig, axes = _figure(2.9 * n + 0.4, 3.1, 1, n, sharey=True)
    for c, (title, lines) in enumerate(panels):
        ax = axes[0, c]
        ax.plot([0, 1], [0, 1], color="gray", lw=0.8, ls="--", label="perfect calibration")
        for i, (name, conf, acc) in enumerate(lines):
            ax.plot(conf, acc, marker="o", ms=3, color=_PALETTE[i % len(_PALETTE)],
                    label=label(name))  # fmt: skip
        ax.set_title(label(title), fontsize=9)
        ax.set_xlabel("confidence (top-class probability)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left", frameon=False)
    axes[0, 0].set_ylabel("accuracy")
    fig.tight_layout()
    return _svg(fig, salt)


def gradient_shares(
    salt: str,
    layers: Sequence[str],
    classes: Sequence[str],
    unweighted: Sequence[Sequence[float | None]],
    weighted: Sequence[Sequence[float | None]],
    mass_unweighted: Sequence[float],
    mass_weighted: Sequence[float],
    update: Sequence[Sequence[float | None]] | None = None,
    update_label: str = "",
) -> str:
    """Per-class share of each layer's gradient norm, unweighted and weighted; the loss mass.

    With ``update`` (the weighted loss's update shares), a third heatmap beside
    the weighted gradient's, on the same colour scale, titled with ``update_label``
    (the optimizer).
    """
    c = len(classes)
    mats = [(unweighted, "gradient share, unweighted"), (weighted, "gradient share, weighted")]
    if update is not None:
        mats.append((update, f"update share, weighted ({update_label})"))
    n = len(mats)
    fig, axes = _figure(3.2 * n + 0.25 * c + 3, max(2.4, 0.35 * len(layers) + 1.6), 1, n + 1,
                        gridspec_kw={"width_ratios": [1] * n + [0.9]})  # fmt: skip
    top = max([v for m, _ in mats for r in m for v in r if v is not None] + [1e-9])
    for i, (mat, title) in enumerate(mats):
        heatmap(salt, mat, layers, classes, title=title, xlabel="class", vmin=0.0, vmax=top,
                annotate=len(classes) <= 12, ax=axes[0, i])  # fmt: skip
        if i:
            axes[0, i].set_yticklabels([])
    ax = axes[0, n]
    x = np.arange(c)
    ax.bar(x - 0.2, mass_unweighted, 0.4, label="unweighted", color=_PALETTE[7])
    ax.bar(x + 0.2, mass_weighted, 0.4, label="weighted", color=_PALETTE[0])
    ax.set_xticks(x, [label(name) for name in classes], rotation=45 if c > 6 else 0, fontsize=7)
    ax.set_title("loss mass (count x weight)", fontsize=9)
    ax.set_xlabel("class", fontsize=8)
    ax.legend(fontsize=6, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _svg(fig, salt)


def cell_panels(
    salt: str,
    classes: Sequence[str],
    train_counts: Sequence[float],
    shown: Sequence[str],
    train_loss: Mapping[str, Sequence[float]],
    val_metric: Mapping[str, Sequence[float]],
    confusion: Mapping[str, Sequence[Sequence[int]]],
    precision: Mapping[str, Sequence[float]],
    recall: Mapping[str, Sequence[float]],
    pr: Mapping[str, tuple[Sequence[float], Sequence[float], float, float, int]],
    *,
    metric: str,
) -> str:
    """One cell's panels: curves, confusion matrices, per-class scores, PR curves (binary).

    Training loss and validation metric per epoch, the row-normalised confusion
    matrices of ``shown``, per-class precision and recall against the training
    count, and for binary tasks the PR curve with the argmax threshold marked.
    """
    conf_shown = [w for w in shown if w in confusion]
    n = 3 + len(conf_shown) + (1 if pr else 0)
    fig, axes = _figure(3.0 * n, 3.0, 1, n)
    ax_l, ax_v, ax_c = axes[0, 0], axes[0, 1], axes[0, 2]
    for i, w in enumerate(shown):
        color = _PALETTE[i % len(_PALETTE)]
        if train_loss.get(w):
            ax_l.plot(range(1, len(train_loss[w]) + 1), train_loss[w], color=color,
                      label=label(w))  # fmt: skip
        if val_metric.get(w):
            ax_v.plot(range(1, len(val_metric[w]) + 1), val_metric[w], color=color,
                      label=label(w))  # fmt: skip
    ax_l.set_title("training loss", fontsize=9)
    ax_v.set_title(label(f"validation {metric}"), fontsize=9)
    for ax in (ax_l, ax_v):
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, frameon=False)
    order = np.argsort(-np.asarray(train_counts, dtype=float)) if len(train_counts) == len(
        classes) else np.arange(len(classes))  # fmt: skip
    x = np.asarray(train_counts, dtype=float)[order] if len(train_counts) == len(classes) else (
        np.arange(len(classes), dtype=float))  # fmt: skip
    for i, w in enumerate(shown):
        color = _PALETTE[i % len(_PALETTE)]
        if w in recall and len(recall[w]) == len(classes):
            ax_c.plot(x, np.asarray(recall[w])[order], "-o", ms=3, color=color,
                      label=label(f"{w}: recall"))  # fmt: skip
        if w in precision and len(precision[w]) == len(classes):
            ax_c.plot(x, np.asarray(precision[w])[order], "--s", ms=3, color=color,
                      label=label(f"{w}: precision"))  # fmt: skip
    if len(train_counts) == len(classes):
        ax_c.set_xscale("log")
        for xi, ci in zip(x, order, strict=True):
            ax_c.annotate(label(classes[ci]), (xi, 0.0), fontsize=5, ha="center")
    ax_c.set_xlabel("training examples of the class", fontsize=8)
    ax_c.set_ylim(-0.05, 1.05)
    ax_c.set_title("per-class test precision / recall", fontsize=9)
    ax_c.legend(fontsize=5, frameon=False)
    ax_c.grid(alpha=0.3)
    for j, w in enumerate(conf_shown):
        m = np.asarray(confusion[w], dtype=float)
        rows = m.sum(1, keepdims=True)
        norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        heatmap(salt, norm.tolist(), [label(c) for c in classes], [label(c) for c in classes],
                title=f"confusion: {w}", xlabel="predicted", annotate=len(classes) <= 10,
                ax=axes[0, 3 + j])  # fmt: skip
        axes[0, 3 + j].set_ylabel("true", fontsize=8)
    if pr:
        ax = axes[0, n - 1]
        for i, w in enumerate(shown):
            if w not in pr:
                continue
            rc, pc, r0, p0, pos = pr[w]
            color = _PALETTE[i % len(_PALETTE)]
            ax.plot(rc, pc, color=color, label=label(w))
            ax.plot([r0], [p0], "o", color=color, ms=6, mec="black")
        ax.set_xlabel(label(f"recall of class {classes[pos] if pos < len(classes) else pos}"),
                      fontsize=8)  # fmt: skip
        ax.set_ylabel("precision", fontsize=8)
        ax.set_title("PR curve (dot: the argmax threshold, p = 0.5)", fontsize=8)
        ax.legend(fontsize=6, frameon=False)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _svg(fig, salt)
