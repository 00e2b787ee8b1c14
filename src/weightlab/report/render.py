"""Read a study back from its store and render the self-contained HTML report.

:func:`build_context` gathers every number the report shows (from the store's
trials and metadata, and from data reloaded deterministically where the store
does not keep it); :func:`render_report` turns it into one HTML string with
jinja2 (autoescape on: every string from the data is escaped) and inline SVG
figures; :func:`write_report` writes it to a file.

**Test labels.** The store keeps each trial's test logits but not the test
labels. The report reloads the data set each trial names with
``weightlab.lab.data.load_data(config.data, **config.data_params)``; loading is
deterministic (fixed split seeds), so these are the labels the trial was
scored on. If the data cannot be reloaded (a file that moved), the calibration
section says so and the rest of the report is unaffected.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from weightlab.lab.store import ResultStore
from weightlab.lab.trial import TrialConfig, TrialResult
from weightlab.report import figures

__all__ = ["build_context", "render_html", "render_report", "write_report"]

#: Bins of the reliability diagrams.
RELIABILITY_BINS = 10
#: Temperature of the post-hoc logit adjustment shown next to re-weighting.
TAU = 1.0


def _label(cfg: TrialConfig) -> str:
    from weightlab.lab.study import weighting_label

    return weighting_label(cfg)


def _adjust_logits(logits: npt.NDArray[np.float64], counts: Sequence[float]) -> Any:
    """``logits - tau * log prior`` (weightlab.functional.adjust_logits when it exists)."""
    import torch

    z = torch.as_tensor(logits, dtype=torch.float64)
    try:
        from weightlab.functional import adjust_logits
    except ImportError:  # pragma: no cover - older trees without the losses module
        prior = torch.as_tensor(np.asarray(counts, dtype=np.float64))
        return (z - TAU * torch.log(prior / prior.sum())).numpy()
    return adjust_logits(z, list(map(float, counts)), TAU).numpy()


def _softmax(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)  # type: ignore[no-any-return]


def _reliability_bins(
    logits: Sequence[npt.NDArray[np.float64]], labels: Sequence[npt.NDArray[np.int64]]
) -> tuple[list[float], list[float], float]:
    """Pooled reliability curve (mean confidence, accuracy per non-empty bin) and its ECE."""
    conf = np.concatenate([_softmax(z).max(1) for z in logits])
    hit = np.concatenate([(z.argmax(1) == y) for z, y in zip(logits, labels, strict=True)])
    edges = np.linspace(0.0, 1.0, RELIABILITY_BINS + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, RELIABILITY_BINS - 1)
    xs, ys, ece = [], [], 0.0
    for b in range(RELIABILITY_BINS):
        m = idx == b
        if m.any():
            xs.append(float(conf[m].mean()))
            ys.append(float(hit[m].mean()))
            ece += m.mean() * abs(conf[m].mean() - hit[m].mean())
    return xs, ys, float(ece)


class _DataCache:
    """Each data set reloaded once (test labels, training counts, for diagnostics)."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def get(self, cfg: TrialConfig) -> Any:
        key = json.dumps([cfg.data, dict(cfg.data_params)], sort_keys=True)
        if key not in self._cache:
            from weightlab.lab.data import load_data

            try:
                self._cache[key] = load_data(cfg.data, **dict(cfg.data_params))
            except Exception as err:
                self._cache[key] = None
                self.errors[cfg.data] = f"{type(err).__name__}: {err}"
        return self._cache[key]


def _fmt(v: float | None, signed: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def _order(values: Iterable[str], known: Sequence[str]) -> list[str]:
    vs = set(values)
    return [v for v in known if v in vs] + sorted(vs - set(known))


def _weighting_order(labels: Iterable[str]) -> list[str]:
    def key(w: str) -> tuple[int, float, str]:
        if w == "none":
            return (0, 0.0, w)
        if w.startswith("power(a="):
            return (2, float(w[8:-1]), w)
        return (1, 0.0, w)

    return sorted(set(labels), key=key)


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
    from weightlab.lab.metrics import HIGHER_IS_BETTER, compute_metrics
    from weightlab.lab.study import summarize

    meta = store.meta()
    spec = meta.get("spec") or {}
    metric = metric or spec.get("metric") or "balanced_accuracy"
    results = list(store.results())
    done = [r for r in results if r.status == "done"]
    failed = [r for r in results if r.status == "failed"]
    summary = summarize(results, metric) if metric in HIGHER_IS_BETTER else None
    cache = _DataCache()
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
    counts = [int(c) for c in data_meta.get("train_counts", [])]
    if not class_names and done and done[0].test_logits:
        class_names = [str(c) for c in range(len(done[0].test_logits[0]))]
    archs = _order({r.config.arch for r in results}, ("mlp", "cnn", "gru", "lstm"))
    opts = _order({r.config.optimizer for r in results}, ("sgd", "adam", "adamw", "rmsprop"))
    figs: dict[str, str] = {}
    ctx: dict[str, Any] = {
        "title": f"weightlab study: {data_meta.get('name') or spec.get('data') or 'results'}",
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "metric": metric,
        "higher_is_better": HIGHER_IS_BETTER.get(metric, True),
        "n_trials": len(results),
        "n_done": len(done),
        "n_failed": len(failed),
        "archs": archs,
        "optimizers": opts,
        "figures": figs,
        "strength_metrics": [],
    }

    # -- first screen: best weighting per arch x optimizer, and how much it matters
    best_rows, gain_rows, gain_cols, gain_matrix = [], [], [], []
    if summary is not None:
        ctx["answer"] = summary.answer
        gain_cols = _weighting_order(w.weighting for c in summary.cells for w in c.ranking)
        for cell in summary.cells:
            ranked = [w for w in cell.ranking if w.n]
            if not ranked:
                continue
            best, worst = ranked[0], ranked[-1]
            second = ranked[1] if len(ranked) > 1 else None
            best_rows.append({
                "arch": cell.arch, "optimizer": cell.optimizer, "best": best.weighting,
                "mean": _fmt(best.mean), "std": _fmt(best.std), "n": best.n,
                "gain": _fmt(best.gain, True),
                "runner_up": second.weighting if second else "–",
                "margin": _fmt(abs(best.mean - second.mean) if second else None),
                "spread": _fmt(abs(best.mean - worst.mean)),
            })  # fmt: skip
            by = {w.weighting: w.gain for w in cell.ranking if w.n}
            gain_rows.append(f"{cell.arch}/{cell.optimizer}")
            gain_matrix.append([by.get(w) for w in gain_cols])
        ctx["leaderboard"] = [
            {**row, "mean": _fmt(row["mean"]), "std": _fmt(row["std"]),
             "gain_vs_none": _fmt(row["gain_vs_none"], True),
             "rank": row["rank"] or "–"}
            for row in summary.rows()
        ]  # fmt: skip
    else:
        ctx["answer"] = f"The metric {metric!r} is not one the lab computes."
        ctx["leaderboard"] = []
    ctx["best_rows"] = best_rows
    if gain_matrix and any(v is not None for r in gain_matrix for v in r):
        figs["gain"] = figures.gain_heatmap("fig-gain", gain_matrix, gain_rows, gain_cols)

    # -- data
    ctx["data"] = {
        "name": data_meta.get("name") or spec.get("data", ""),
        "classes": len(class_names),
        "imbalance": f"{max(counts) / min(counts):.3g}" if counts and min(counts) > 0 else "–",
        "n_train": data_meta.get("n_train", "–"),
        "n_val": data_meta.get("n_val", "–"),
        "n_test": data_meta.get("n_test", "–"),
        "rows": list(zip(class_names, counts, strict=False)),
    }
    if counts:
        figs["classes"] = figures.bar_log("fig-classes", class_names, counts,
                                          ylabel="training examples")  # fmt: skip

    # -- weights of each scheme
    weights: dict[str, list[float]] = {}
    if counts and min(counts) > 0:
        from weightlab.weights import class_weights, list_schemes

        for scheme in list_schemes():
            try:
                weights[scheme] = [float(v) for v in class_weights(counts, scheme)]
            except Exception:
                continue
        for a in sorted({r.config.alpha for r in results if r.config.weighting == "power"
                         and r.config.alpha is not None}):  # fmt: skip
            weights[f"power(a={a:g})"] = [float(v) for v in class_weights(counts, "power", alpha=a)]
        weights.pop("power", None)
        if weights:
            figs["weights"] = figures.weights_bars("fig-weights", class_names, weights)
    ctx["weights"] = {
        "schemes": list(weights),
        "rows": [(name, [f"{w[i]:.3g}" for w in weights.values()])
                 for i, name in enumerate(class_names)],
    }  # fmt: skip

    # -- the core figure: metric and tail recall against alpha
    power = [r for r in done if r.config.weighting == "power" and r.config.alpha is not None]
    if power and not any(r.config.alpha == 0 for r in power):
        # "none" is power(a=0): every weight 1. Draw it as the curves' alpha = 0 point.
        power += [replace(r, config=replace(r.config, alpha=0.0)) for r in done
                  if r.config.weighting == "none"]  # fmt: skip
    if power:
        shown = [metric, "tail_recall"] if metric != "tail_recall" else [metric]
        curves_a: dict[tuple[str, str, str], Any] = {}
        curves_o: dict[tuple[str, str, str], Any] = {}
        for m in shown:
            groups: dict[tuple[str, str, float], list[float]] = {}
            for r in power:
                v = r.metrics.get(m)
                if v is not None and math.isfinite(v):
                    key = (r.config.arch, r.config.optimizer, float(r.config.alpha))  # type: ignore[arg-type]
                    groups.setdefault(key, []).append(float(v))
            for arch in archs:
                for opt in opts:
                    pts = sorted((a, vs) for (ar, op, a), vs in groups.items()
                                 if ar == arch and op == opt)  # fmt: skip
                    if not pts:
                        continue
                    curve = ([a for a, _ in pts], [statistics.fmean(vs) for _, vs in pts],
                             [min(vs) for _, vs in pts], [max(vs) for _, vs in pts])  # fmt: skip
                    curves_a[(m, opt, arch)] = curve
                    curves_o[(m, arch, opt)] = curve
        figs["strength"] = figures.strength_curves(
            "fig-strength", opts, shown, curves_a, archs, panel_name="optimizer",
            line_name="architecture",
        )  # fmt: skip
        figs["strength_t"] = figures.strength_curves(
            "fig-strength-t", archs, shown, curves_o, opts, panel_name="architecture",
            line_name="optimizer",
        )  # fmt: skip
        ctx["strength_metrics"] = shown

    # -- per-class recall heatmaps (weighting x class), one per architecture
    per_class: list[tuple[str, str]] = []
    for arch in archs:
        rows: dict[str, list[list[float]]] = {}
        for r in done:
            rec = r.per_class.get("recall")
            if r.config.arch == arch and rec:
                rows.setdefault(_label(r.config), []).append(rec)
        if not rows:
            continue
        order = _weighting_order(rows)
        mat = [list(np.mean(np.asarray(rows[w], dtype=float), axis=0)) for w in order]
        names = (
            class_names if len(class_names) == len(mat[0]) else list(map(str, range(len(mat[0]))))
        )
        salt = f"fig-recall-{arch}"
        per_class.append((arch, figures.heatmap(salt, mat, order, names, xlabel="class",
                                                title=f"{arch}: test recall")))  # fmt: skip
    ctx["per_class"] = per_class

    # -- calibration: reliability per architecture, re-weighting vs post-hoc adjustment
    calib_panels, calib_rows = [], []
    for arch in archs:
        by_w: dict[str, tuple[list[Any], list[Any]]] = {}
        adjusted: tuple[list[Any], list[Any]] = ([], [])
        la_scores: list[tuple[float, float]] = []
        for r in done:
            if r.config.arch != arch or not r.test_logits:
                continue
            data = cache.get(r.config)
            if data is None:
                continue
            z = np.asarray(r.test_logits, dtype=np.float64)
            y = data.y_test.numpy()
            if z.shape[0] != y.shape[0]:
                continue
            w = _label(r.config)
            by_w.setdefault(w, ([], []))
            by_w[w][0].append(z)
            by_w[w][1].append(y)
            if r.config.weighting == "none":
                za = _adjust_logits(z, data.train_counts)
                adjusted[0].append(za)
                adjusted[1].append(y)
                m, _ = compute_metrics(za, y, data.train_counts)
                la_scores.append((m.get(metric, math.nan), m["ece"]))
        if not by_w:
            continue
        order = _weighting_order(by_w)
        shown_w = [w for w in order if w == "none"]
        best_cell = next((row["best"] for row in best_rows if row["arch"] == arch), None)
        others = [w for w in order if w != "none"]
        if best_cell in others:
            shown_w.append(best_cell)
        elif others:
            shown_w.append(others[-1])
        lines = []
        for w in shown_w:
            xs, ys, _ = _reliability_bins(*by_w[w])
            lines.append((f"{w} (trained)", xs, ys))
        if adjusted[0]:
            xs, ys, _ = _reliability_bins(*adjusted)
            lines.append((f"none + logit adjustment (tau={TAU:g})", xs, ys))
        calib_panels.append((arch, lines))
        for w in order:
            trials = [r for r in done if r.config.arch == arch and _label(r.config) == w]
            ms = [r.metrics.get(metric, math.nan) for r in trials]
            es = [r.metrics.get("ece", math.nan) for r in trials]
            calib_rows.append({"arch": arch, "method": f"trained with {w}",
                               "metric": _fmt(_nanmean(ms)), "ece": _fmt(_nanmean(es)),
                               "n": len(trials)})  # fmt: skip
        if la_scores:
            calib_rows.append({
                "arch": arch, "method": f"none + logit adjustment (tau={TAU:g}, post hoc)",
                "metric": _fmt(_nanmean([s[0] for s in la_scores])),
                "ece": _fmt(_nanmean([s[1] for s in la_scores])), "n": len(la_scores),
            })  # fmt: skip
    if calib_panels:
        figs["reliability"] = figures.reliability("fig-reliability", calib_panels)
    ctx["calibration_rows"] = calib_rows
    ctx["data_errors"] = dict(cache.errors)

    # -- gradient diagnostics per architecture
    ctx["gradients"] = _gradient_sections(results, archs, class_names, cache, diagnostics)

    # -- failures and provenance
    ctx["failures"] = [
        {"trial_id": r.config.trial_id, "arch": r.config.arch, "optimizer": r.config.optimizer,
         "weighting": _label(r.config), "seed": r.config.seed, "reason": r.reason}
        for r in failed
    ]  # fmt: skip
    ctx["models"] = _model_rows(results)
    command = meta.get("command")
    ctx["command"] = " ".join(command) if isinstance(command, list) else (command or "")
    ctx["versions"] = sorted((str(k), str(v)) for k, v in (meta.get("versions") or {}).items())
    ctx["spec"] = json.dumps(spec, indent=2, sort_keys=True) if spec else ""
    return ctx


def _model_rows(results: Sequence[TrialResult]) -> list[dict[str, str]]:
    """Each architecture's model options (size, head) and the weightings trained with them."""
    used: dict[tuple[str, str], set[str]] = {}
    for r in results:
        cfg = r.config
        options = ", ".join(f"{k}={v}" for k, v in cfg.model_params) or "defaults"
        used.setdefault((cfg.arch, options), set()).add(cfg.weighting)
    return [
        {"arch": arch, "options": options, "weightings": ", ".join(sorted(ws))}
        for (arch, options), ws in sorted(used.items())
    ]


def _nanmean(vs: Sequence[float]) -> float | None:
    good = [v for v in vs if v is not None and math.isfinite(v)]
    return statistics.fmean(good) if good else None


def _diag_trial(trials: Sequence[TrialResult]) -> TrialResult | None:
    """The trial whose diagnostics show the weighting best: the most skewed weighting of seed 0."""

    def skew(r: TrialResult) -> tuple[int, float, int]:
        c = r.config
        if c.weighting == "none":
            return (0, 0.0, -c.seed)
        if c.weighting == "power":
            return (1, float(c.alpha or 0.0), -c.seed)
        return (1, 1.0 if c.weighting in ("balanced", "inverse") else 0.5, -c.seed)

    return max(trials, key=skew) if trials else None


def _gradient_sections(
    results: Sequence[TrialResult],
    archs: Sequence[str],
    class_names: Sequence[str],
    cache: _DataCache,
    compute: bool,
) -> list[dict[str, Any]]:
    out = []
    for arch in archs:
        trials = [r for r in results if r.config.arch == arch]
        with_diag = [r for r in trials if (r.extra.get("diagnostics") or {})]
        chosen = _diag_trial(with_diag) or _diag_trial(trials)
        if chosen is None:
            continue
        stored = chosen.extra.get("diagnostics") or {}
        panels: list[tuple[str, dict[str, Any]]] = []
        for when, what in (("init", "at initialisation"), ("final", "after training")):
            d = stored.get(when)
            if isinstance(d, dict) and d.get("layers"):
                panels.append((what, d))
        source = "stored by the engine"
        if not panels and compute:
            data = cache.get(chosen.config)
            if data is not None:
                from weightlab.diagnostics import diagnostics_for_trial

                try:
                    panels.append(("at initialisation", diagnostics_for_trial(chosen.config, data)))
                    source = "computed for this report on a freshly initialised model"
                except Exception as err:
                    cache.errors[f"diagnostics ({arch})"] = f"{type(err).__name__}: {err}"
        for what, d in panels:
            names = class_names if len(class_names) == len(d["classes"]) else [
                str(c) for c in d["classes"]]  # fmt: skip
            fig_id = f"fig-grad-{arch}-{'init' if what.startswith('at') else 'final'}"
            svg = figures.gradient_shares(
                fig_id,
                d["layers"], names, d["share_unweighted"], d["share_weighted"],
                d.get("loss_mass_unweighted") or [0.0] * len(names), d["loss_mass"],
            )  # fmt: skip
            out.append({"arch": arch, "when": what, "weighting": _label(chosen.config),
                        "optimizer": chosen.config.optimizer, "seed": chosen.config.seed,
                        "source": source, "svg": svg, "id": fig_id})  # fmt: skip
    return out


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

    Returns:
        The path written.
    """
    out = Path(path)
    if isinstance(store, ResultStore):
        html = render_report(store, metric=metric, diagnostics=diagnostics)
    else:
        from weightlab.lab.store_sqlite import SQLiteStore

        with SQLiteStore(store, create=False) as s:
            html = render_report(s, metric=metric, diagnostics=diagnostics)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
