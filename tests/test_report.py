import re
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from _report_study import tiny_context, tiny_store_path
from weightlab.cli import app
from weightlab.lab.store import MemoryStore
from weightlab.lab.store_sqlite import SQLiteStore
from weightlab.lab.study import StudySpec, run_study
from weightlab.lab.trial import TrialConfig, TrialResult
from weightlab.report import build_context, render_html, render_report, write_report

SECTIONS = ("answer", "data", "weights", "leaderboard", "cells", "strength", "per-class",
            "calibration", "gradients", "failures", "provenance")  # fmt: skip
EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def ctx() -> dict:
    return tiny_context()


@pytest.fixture(scope="module")
def html(ctx) -> str:
    return render_html(ctx)


def test_every_section_and_figure_is_present(html):
    for sec in SECTIONS:
        assert f'<section id="{sec}">' in html
    for fig in ("fig-gain", "fig-classes", "fig-weights", "fig-strength", "fig-strength-t",
                "fig-recall-mlp", "fig-recall-gru", "fig-reliability", "fig-grad-mlp-init",
                "fig-grad-gru-init", "fig-cell-mlp-sgd", "fig-cell-gru-adam"):  # fmt: skip
        m = re.search(rf'<figure id="{fig}">\s*<svg (.*?)</svg>\s*<figcaption>(.+?)</figcaption>',
                      html, re.S)  # fmt: skip
        assert m, fig
        assert len(m.group(1)) > 1000  # a real drawing
        assert m.group(2).strip()  # a caption saying what to read
    # self-contained: no scripts, no external resources
    assert "<script" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "computed for this report on a freshly initialised model" in html
    assert "weightlab study --epochs 1" in html  # the command from the store's meta
    assert "torch" in html and "scikit-learn" in html  # versions


def test_first_screen_names_the_best_weighting_per_cell(html):
    answer = html.split('<section id="data">')[0]
    for cell in ("mlp</td><td>sgd", "mlp</td><td>adam", "gru</td><td>sgd", "gru</td><td>adam"):
        assert cell in answer
    assert "gain vs none" in answer and "best − worst" in answer


def test_context_numbers_come_from_the_store(ctx):
    with SQLiteStore(tiny_store_path(), create=False) as store:
        n = len(store)
    assert ctx["n_trials"] == n == 24
    assert ctx["data"]["imbalance"] == "10"
    assert [g["when"] for g in ctx["gradients"]] == ["at initialisation"] * 2
    methods = {r["method"] for r in ctx["calibration_rows"]}
    assert "none + logit adjustment (tau=1, post hoc)" in methods
    assert ctx["weights"]["schemes"][:2] == ["inverse", "balanced"]
    assert "power(a=1)" in ctx["weights"]["schemes"]


def test_stored_diagnostics_are_used(tmp_path):
    store = MemoryStore()
    with SQLiteStore(tiny_store_path(), create=False) as src:
        for key, value in src.meta().items():
            store.put_meta(key, value)
        results = list(src.results())
    diag = {"layers": ["net.0", "net.2"], "classes": list(range(10)),
            "share_weighted": [[0.1] * 10] * 2, "share_unweighted": [[0.1] * 10] * 2,
            "loss_mass": [0.1] * 10, "loss_mass_unweighted": [0.1] * 10}  # fmt: skip
    for r in results:
        if r.config.arch == "mlp" and r.config.optimizer == "adam":
            r.extra["diagnostics"] = {"init": diag, "final": diag}
            store.put(r)
    context = build_context(store, diagnostics=False)
    mlp = [g for g in context["gradients"] if g["arch"] == "mlp"]
    assert [g["when"] for g in mlp] == ["at initialisation", "after training"]
    assert all(g["source"] == "stored by the engine" for g in mlp)


def test_study_records_diagnostics_that_the_report_uses():
    from weightlab.lab.study import StudySpec, run_study

    spec = StudySpec(
        archs=["mlp"], optimizers=["adam"], weightings=["none", "balanced", "focal"], seeds=[0],
        epochs=1, model_params={"mlp": {"hidden": 16, "layers": 1}},
    )  # fmt: skip
    store = MemoryStore()
    run_study(spec, store)
    results = list(store.results())
    assert len(results) == 3
    for r in results:
        diag = r.extra["diagnostics"]
        for when in ("init", "final"):
            shares = np.array(diag[when]["share_weighted"], dtype=float)
            np.testing.assert_allclose(shares.sum(1), 1.0)
    balanced = next(r for r in results if r.config.weighting == "balanced")
    mass = balanced.extra["diagnostics"]["init"]["loss_mass"]
    assert max(mass) / min(mass) < max(
        balanced.extra["diagnostics"]["init"]["loss_mass_unweighted"]
    ) / min(balanced.extra["diagnostics"]["init"]["loss_mass_unweighted"])
    context = build_context(store, diagnostics=False)
    assert context["gradients"]
    assert all(g["source"] == "stored by the engine" for g in context["gradients"])


def test_every_string_from_the_data_is_escaped(tmp_path):
    rng = np.random.default_rng(0)
    names = ["common", EVIL, "rare $x$"]
    rows = ["f1,f2,f3,label"]
    for c, n in enumerate((60, 20, 8)):
        for _ in range(n):
            x = rng.normal(c, 1.0, 3)
            rows.append(f'{x[0]:.3f},{x[1]:.3f},{x[2]:.3f},"{names[c]}"')
    csv = tmp_path / "evil<img src=x onerror=alert(2)>.csv"
    csv.write_text("\n".join(rows) + "\n")
    spec = StudySpec(data=str(csv), archs=["mlp"], optimizers=["adam"],
                     weightings=["none", "power"], strengths=[0.0, 1.0], seeds=[0], epochs=1,
                     model_params={"mlp": {"hidden": 8, "layers": 1}})  # fmt: skip
    store = MemoryStore()
    run_study(spec, store, command=["weightlab", "study", "--data", str(csv)])
    cfg = TrialConfig(str(csv), "mlp", "sgd", "none", None, 7)
    store.put(TrialResult(cfg, "failed", reason=f"diverged {EVIL} & <b>bold</b>"))
    html = render_report(store)
    assert EVIL not in html
    assert "<img src=x" not in html and "<b>bold</b>" not in html
    assert "<script" not in html
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert html.count(escaped) >= 3  # tables, failure reason, ...
    svgs = re.findall(r"<svg .*?</svg>", html, re.S)
    assert any(escaped in s for s in svgs)  # matplotlib SVG text is escaped too
    assert "rare $x$" in html  # shown as text in tables (and not as mathtext in figures)
    assert "diverged" in html.split('<section id="failures">')[1]


def test_cli_writes_the_report(tmp_path):
    store = tmp_path / "study.sqlite"
    shutil.copy(tiny_store_path(), store)
    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["report", str(store), "-o", str(out), "--no-diagnostics"])
    # (the tiny study has no "balanced"; --metric picks the ranking)
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("<!DOCTYPE html>")
    res = CliRunner().invoke(app, ["report", str(store), "--no-diagnostics"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "study-report.html").read_text().startswith("<!DOCTYPE html>")
    res = CliRunner().invoke(app, ["report", str(tmp_path / "missing.sqlite")])
    assert res.exit_code == 2
    assert "Expected `STORE` to be an existing study store" in res.output


def test_write_report_accepts_a_store_or_a_path(tmp_path):
    p = write_report(MemoryStore(), tmp_path / "sub" / "empty.html")
    assert "No trial failed" in p.read_text()


def test_provenance_lists_each_architectures_model_options():
    from weightlab.lab.study import StudySpec, run_study

    spec = StudySpec(
        archs=["mlp"], optimizers=["adam"], weightings=["none", "ldam"], seeds=[0], epochs=1,
        model_params={"mlp": {"hidden": 8}},
    )  # fmt: skip
    store = MemoryStore()
    run_study(spec, store, diagnostics=False)
    context = build_context(store, diagnostics=False)
    assert context["models"] == [
        {"arch": "mlp", "options": "head=cosine, hidden=8", "weightings": "ldam"},
        {"arch": "mlp", "options": "hidden=8", "weightings": "none"},
    ]
    page = render_html(context)
    assert "<td>head=cosine, hidden=8</td><td>ldam</td>" in page


def test_leaderboard_marks_intervals_and_cells_come_from_the_summary(ctx, html):
    rows = ctx["leaderboard"]
    assert {r["mark"] for r in rows if r["rank"] == 1} == {"★ chosen"}
    assert all(r["mark"] in ("★ chosen", "≈ tie", "▼ worse", "▲ better on test", "")
               for r in rows)  # fmt: skip
    assert any(r["ci"].startswith("[") for r in rows if r["weighting"] != "none")
    assert ctx["selection"] in ("validation balanced_accuracy at the checkpoint epoch",
                                "the best epoch of the stored validation curve")
    assert f"ranked on {ctx['selection']}" in html
    cells = {(c["arch"], c["optimizer"]): c for c in ctx["cells"]}
    assert set(cells) == {(a, o) for a in ("mlp", "gru") for o in ("sgd", "adam")}
    assert all(c["shown"][0].startswith("none") for c in cells.values())
    assert cells[("mlp", "sgd")]["label"] == "mlp"  # trained by the lab's engine
