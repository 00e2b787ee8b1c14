"""The report's analysis on its own: each number against an independent reference."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import weightlab.lab.diagnose
from _report_study import tiny_store_path
from weightlab.lab.metrics import compute_metrics
from weightlab.lab.store_sqlite import SQLiteStore
from weightlab.lab.study import CellSummary, Summary, WeightingStats
from weightlab.lab.trial import TrialConfig, TrialResult
from weightlab.report import analysis as an


def _cfg(weighting="none", alpha=None, seed=0, arch="mlp", optimizer="adam", **kw):
    return TrialConfig("digits-lt", arch, optimizer, weighting, alpha, seed, **kw)


def _logits_of(probs):
    return np.log(np.asarray(probs, dtype=np.float64))


# -- softmax, reliability, ECE -----------------------------------------------------------


def test_softmax_matches_the_definition_and_is_stable():
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1000.0, -1000.0, 0.0]])
    p = an.softmax(z)
    np.testing.assert_allclose(p[0], np.exp(z[0]) / np.exp(z[0]).sum())
    np.testing.assert_allclose(p[1], [1 / 3] * 3)
    np.testing.assert_allclose(p[2], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(p.sum(1), 1.0)


def test_reliability_and_ece_by_hand():
    # top-class confidences 0.9 (hit), 0.9 (miss), 0.7 (hit), 0.6 (hit) -> bins 9, 9, 7, 6
    z = _logits_of([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    y = np.array([0, 1, 1, 0])
    rb = an.reliability_bins([z], [y])
    np.testing.assert_allclose(rb.confidence, [0.6, 0.7, 0.9])
    assert rb.accuracy == [1.0, 1.0, 0.5]
    assert rb.count == [1, 1, 2]
    # ECE = 1/4 |1 - 0.6| + 1/4 |1 - 0.7| + 2/4 |0.5 - 0.9| = 0.1 + 0.075 + 0.2
    assert rb.ece == pytest.approx(0.375)
    assert an.expected_calibration_error(z, y) == pytest.approx(0.375)
    # a perfectly calibrated bin: confidence 0.5 and half of the rows right
    half = _logits_of([[0.5, 0.5]] * 4)
    assert an.expected_calibration_error(half, np.array([0, 1, 0, 1])) == pytest.approx(0.0)


def test_reliability_pools_models_and_counts_every_row():
    rng = np.random.default_rng(0)
    zs = [rng.normal(0, 3, (n, 5)) for n in (37, 50, 13)]
    zs[0][0] = [100.0, 0, 0, 0, 0]  # confidence 1.0 goes to the last bin
    ys = [rng.integers(0, 5, len(z)) for z in zs]
    rb = an.reliability_bins(zs, ys)
    assert sum(rb.count) == 100
    assert all(n > 0 for n in rb.count)  # empty bins are left out
    pooled = an.reliability_bins([np.concatenate(zs)], [np.concatenate(ys)])
    assert pooled == rb
    # the same with 3 bins: counts still sum to N, and the curve is shorter
    assert sum(an.reliability_bins(zs, ys, n_bins=3).count) == 100


def test_ece_matches_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.classification")
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, (400, 4))
    y = rng.integers(0, 4, 400)
    ref = tm.multiclass_calibration_error(
        torch.as_tensor(an.softmax(z)), torch.as_tensor(y), num_classes=4, n_bins=10, norm="l1"
    )
    assert an.expected_calibration_error(z, y) == pytest.approx(float(ref), abs=1e-6)


# -- post-hoc logit adjustment -------------------------------------------------------------


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.0])
def test_adjust_logits_is_logits_minus_tau_log_prior(tau):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(6, 3))
    counts = [500, 50, 5]
    prior = np.array(counts, dtype=np.float64) / sum(counts)
    out = an.adjust_logits(z, counts, tau)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, z - tau * np.log(prior), rtol=0, atol=1e-12)


def test_adjust_logits_defaults_to_tau_one():
    z = np.zeros((2, 2))
    np.testing.assert_allclose(an.adjust_logits(z, [3, 1]), -np.log([[0.75, 0.25]] * 2))


# -- small helpers ---------------------------------------------------------------------------


def test_order_and_weighting_order():
    assert an.order({"lstm", "mlp", "zz", "aa"}, ("mlp", "cnn", "gru", "lstm")) == [
        "mlp", "lstm", "aa", "zz"]  # fmt: skip
    labels = ["power(a=2)", "none", "ldam", "power(a=0.5)", "focal", "none"]
    assert an.weighting_order(labels) == ["none", "focal", "ldam", "power(a=0.5)", "power(a=2)"]


def test_nanmean():
    assert an.nanmean([1.0, 2.0, math.nan, math.inf, None]) == 1.5
    assert an.nanmean([]) is None
    assert an.nanmean([math.nan]) is None


def test_best_per_cell_margin_spread_and_gains():
    def ws(w, mean, n=2, gain=None):
        return WeightingStats(w, mean, 0.01, n, 0, gain)

    ranking = (ws("focal", 0.8, gain=0.3), ws("none", 0.5, gain=0.0), ws("ldam", 0.4, gain=-0.1),
               ws("power(a=1)", 0, n=0))  # fmt: skip
    cell = CellSummary("d", "mlp", "adam", ranking)
    lone = CellSummary("d", "gru", "sgd", (ws("none", 0.6, gain=0.0),))
    empty = CellSummary("d", "cnn", "sgd", (ws("none", 0.0, n=0),))
    summary = Summary("balanced_accuracy", True, (cell, lone, empty), "answer", 7, 0)
    best = an.best_per_cell(summary)
    assert [(b.arch, b.best) for b in best] == [("mlp", "focal"), ("gru", "none")]
    b = best[0]
    assert (b.mean, b.n, b.gain, b.runner_up) == (0.8, 2, 0.3, "none")
    assert b.margin == pytest.approx(0.3)
    assert b.spread == pytest.approx(0.4)
    assert b.gains == {"focal": 0.3, "none": 0.0, "ldam": -0.1}  # unfinished ones left out
    assert best[1].runner_up is None and best[1].margin is None and best[1].spread == 0.0


def test_scheme_weights_are_class_weights_with_power_per_alpha():
    from weightlab.weights import class_weights, list_schemes

    counts = [100, 30, 10]
    w = an.scheme_weights(counts, [0.5, 1.0])
    assert "power" not in w
    assert list(w)[-2:] == ["power(a=0.5)", "power(a=1)"]
    np.testing.assert_allclose(w["balanced"], class_weights(counts, "balanced"))
    np.testing.assert_allclose(w["power(a=0.5)"], class_weights(counts, "power", alpha=0.5))
    assert [s for s in w if not s.startswith("power(")] == [
        s for s in list_schemes() if s != "power" and s in w]  # fmt: skip
    assert an.scheme_weights([], [1.0]) == {}
    assert an.scheme_weights([5, 0], [1.0]) == {}


def test_power_alphas_are_distinct_and_sorted():
    rs = [TrialResult(_cfg("power", a), "done") for a in (1.0, 0.5, 1.0)]
    rs += [TrialResult(_cfg("none"), "failed"), TrialResult(_cfg("power", 2.0), "failed")]
    assert an.power_alphas(rs) == [0.5, 1.0, 2.0]


# -- sections on hand-built trials -------------------------------------------------------------


def test_strength_sweep_means_bands_and_none_as_alpha_zero():
    def trial(w, a, seed, ba, tail, opt="adam"):
        return TrialResult(_cfg(w, a, seed, optimizer=opt), "done",
                           metrics={"balanced_accuracy": ba, "tail_recall": tail})  # fmt: skip

    done = [trial("power", 1.0, 0, 0.6, 0.4), trial("power", 1.0, 1, 0.8, math.nan),
            trial("none", None, 0, 0.5, 0.1), trial("none", None, 1, 0.3, 0.3),
            trial("power", 1.0, 0, 0.7, 0.2, opt="sgd")]  # fmt: skip
    s = an.strength_sweep(done, "balanced_accuracy", ["mlp"], ["sgd", "adam"])
    assert s is not None and s.metrics == ["balanced_accuracy", "tail_recall"]
    c = s.curves[("balanced_accuracy", "mlp", "adam")]
    assert c.alpha == [0.0, 1.0]
    np.testing.assert_allclose(c.mean, [0.4, 0.7])
    assert (c.low, c.high) == ([0.3, 0.6], [0.5, 0.8])
    t = s.curves[("tail_recall", "mlp", "adam")]
    np.testing.assert_allclose(t.mean, [0.2, 0.4])  # the NaN seed is left out
    assert s.curves[("balanced_accuracy", "mlp", "sgd")].alpha == [1.0]  # no "none" with sgd
    assert an.strength_sweep(done, "tail_recall", ["mlp"], ["adam"]).metrics == ["tail_recall"]
    assert an.strength_sweep(done[2:4], "balanced_accuracy", ["mlp"], ["adam"]) is None


def test_mean_recall_averages_per_weighting():
    done = [TrialResult(_cfg("power", 1.0, s), "done", per_class={"recall": r})
            for s, r in ((0, [1.0, 0.0]), (1, [0.5, 0.5]))]  # fmt: skip
    done.append(TrialResult(_cfg("none"), "done", per_class={"recall": [0.9, 0.1]}))
    done.append(TrialResult(_cfg("none", arch="gru"), "done", per_class={"recall": [0.0, 0.0]}))
    assert an.mean_recall(done, "mlp") == {"power(a=1)": [0.75, 0.25], "none": [0.9, 0.1]}
    assert an.mean_recall(done, "cnn") == {}


class _FakeCache:
    def __init__(self, data):
        self.data = data

    def get(self, cfg):
        return self.data if cfg.data == "digits-lt" else None


def test_calibration_against_compute_metrics_and_stored_scores():
    rng = np.random.default_rng(3)
    n, k = 60, 3
    counts = [40, 15, 5]
    y = torch.as_tensor(rng.integers(0, k, n))
    data = SimpleNamespace(y_test=y, train_counts=counts)
    zs = {s: rng.normal(0, 2, (n, k)) for s in range(3)}

    def trial(w, a, seed, score, ece):
        return TrialResult(_cfg(w, a, seed), "done", test_logits=zs[seed].tolist(),
                           metrics={"balanced_accuracy": score, "ece": ece})  # fmt: skip

    done = [trial("none", None, 0, 0.5, 0.2), trial("none", None, 1, math.nan, 0.4),
            trial("power", 1.0, 2, 0.7, 0.1),
            TrialResult(_cfg("power", 1.0, 5), "done", metrics={"balanced_accuracy": 0.9}),
            TrialResult(_cfg("none", arch="gru"), "done", test_logits=zs[0].tolist())]  # fmt: skip
    c = an.calibration(done, "mlp", "balanced_accuracy", _FakeCache(data))
    assert c is not None and c.arch == "mlp"
    assert set(c.reliability) == set(c.trained) == {"none", "power(a=1)"}
    assert sum(c.reliability["none"].count) == 2 * n
    assert c.reliability["power(a=1)"] == an.reliability_bins([zs[2]], [y.numpy()])
    # stored scores: finite means over every finished trial of the weighting (also without logits)
    assert c.trained["none"] == an.Score(0.5, pytest.approx(0.3), 2)
    assert c.trained["power(a=1)"].metric == pytest.approx(0.8)
    assert c.trained["power(a=1)"].n == 2
    # post hoc: compute_metrics of logits - log prior, for the "none" trials only
    prior = np.array(counts) / sum(counts)
    ref = [compute_metrics(zs[s] - np.log(prior), y.numpy(), counts)[0] for s in (0, 1)]
    assert c.adjusted_score.n == 2
    assert c.adjusted_score.metric == pytest.approx(np.mean([m["balanced_accuracy"] for m in ref]))
    assert c.adjusted_score.ece == pytest.approx(np.mean([m["ece"] for m in ref]))
    assert sum(c.adjusted.count) == 2 * n
    # nothing to match: no data, or logits of the wrong length
    assert an.calibration(done, "mlp", "balanced_accuracy", _FakeCache(None)) is None
    short = SimpleNamespace(y_test=y[:10], train_counts=counts)
    assert an.calibration(done, "mlp", "balanced_accuracy", _FakeCache(short)) is None


def test_diagnostics_trial_picks_the_most_skewed_weighting_of_the_lowest_seed():
    rs = [TrialResult(_cfg(w, a, s), "done") for w, a, s in (
        ("none", None, 0), ("focal", None, 0), ("balanced", None, 1), ("balanced", None, 0),
        ("power", 0.5, 0))]  # fmt: skip
    assert an.diagnostics_trial(rs).config == _cfg("balanced", None, 0)
    rs.append(TrialResult(_cfg("power", 2.0, 3), "done"))
    assert an.diagnostics_trial(rs).config == _cfg("power", 2.0, 3)
    assert an.diagnostics_trial([]) is None


def test_gradient_panels_prefer_stored_diagnostics():
    diag = {"layers": ["l0"], "classes": [0, 1], "share_weighted": [[0.5, 0.5]],
            "share_unweighted": [[0.9, 0.1]], "loss_mass": [0.5, 0.5]}  # fmt: skip
    rs = [TrialResult(_cfg("none"), "done"),
          TrialResult(_cfg("power", 1.0, 1), "done", extra={"diagnostics": {"final": diag}}),
          TrialResult(_cfg("power", 0.5, arch="gru"), "done", extra={"stack_size": 1})]  # fmt: skip
    panels, errors = an.gradient_panels(rs, ["mlp", "gru"], _FakeCache(None), compute=True)
    assert errors == {}
    assert panels == [an.GradientPanel("mlp", "final", "stored", "power(a=1)", "adam", 1, diag)]
    # nothing stored, nothing computed: no panel
    panels, _ = an.gradient_panels(rs, ["gru"], _FakeCache(None), compute=False)
    assert panels == []


def test_gradient_panels_compute_the_fallback_and_keep_its_errors(monkeypatch):
    diag = {"layers": ["l0"], "classes": [0, 1]}
    data = SimpleNamespace(name="fake")
    calls = []

    def fake(config, data_):
        calls.append((config, data_))
        if config.arch == "gru":
            raise RuntimeError("no gru today")
        return diag

    # Patch where report/analysis.py calls it from.
    monkeypatch.setattr(weightlab.lab.diagnose, "diagnostics_for_trial", fake)
    lab = {"stack_size": 2}
    rs = [TrialResult(_cfg("none"), "done", extra=lab),
          TrialResult(_cfg("balanced"), "done", extra=lab),
          TrialResult(_cfg("none", arch="gru"), "done", extra=lab)]  # fmt: skip
    panels, errors = an.gradient_panels(rs, ["mlp", "gru"], _FakeCache(data), compute=True)
    assert calls == [(_cfg("balanced"), data), (_cfg("none", arch="gru"), data)]
    assert panels == [an.GradientPanel("mlp", "init", "computed", "balanced", "adam", 0, diag)]
    assert errors == {"diagnostics (gru)": "RuntimeError: no gru today"}
    # a user model (a train_stack that is not the lab's engine) is not diagnosed as the lab's
    calls.clear()
    user = [TrialResult(_cfg("balanced", arch="cnn"), "done", extra={"model": "MyNet"})]
    panels, errors = an.gradient_panels(user, ["cnn"], _FakeCache(data), compute=True)
    assert calls == [] and panels == []
    assert errors["diagnostics (cnn)"].startswith("MyNet (user model, run as cnn): trained by a")


def test_user_models_are_named_as_themselves():
    lab = TrialResult(_cfg("none"), "done", extra={"stack_size": 3})
    named = TrialResult(_cfg("none"), "done", extra={"model": "TinyResNet"})
    anon = TrialResult(_cfg("none"), "done")
    assert [an.model_label(r) for r in (lab, named, anon)] == [
        "mlp", "TinyResNet (user model, run as mlp)", "user model (not recorded; run as mlp)"]


def test_ldam_calibration_uses_its_scaled_logits():
    from weightlab.losses import LOSSES

    s = LOSSES.info("ldam").params["s"].default
    assert an.logit_scale(_cfg("ldam")) == s == 30.0 and an.logit_scale(_cfg("none")) == 1.0
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    cos = np.clip(np.eye(3)[y] * 0.6 + rng.normal(0, 0.2, (300, 3)), -1, 1)
    data = SimpleNamespace(y_test=torch.as_tensor(y), train_counts=[100, 30, 10])
    r = TrialResult(_cfg("ldam"), "done", metrics={"ece": 0.7, "balanced_accuracy": 0.9},
                    test_logits=cos.tolist())  # fmt: skip
    cal = an.calibration([r], "mlp", "balanced_accuracy", _FakeCache(data))
    ref = compute_metrics(cos * s, y, [100, 30, 10])[0]["ece"]
    assert cal.trained["ldam"].ece == pytest.approx(ref)
    assert cal.trained["ldam"].ece != pytest.approx(0.7)
    pooled = an.reliability_bins([cos * s], [y])
    assert cal.reliability["ldam"] == pooled


def test_arch_best_is_the_best_mean_validation_score_over_the_arch_cells():
    def ws(w, val):
        return WeightingStats(w, val, 0.0, 2, 0, None, val_mean=val, names=(w,))

    cells = (CellSummary("d", "mlp", "sgd", (ws("focal", 0.8), ws("power(a=1)", 0.79))),
             CellSummary("d", "mlp", "adam", (ws("power(a=1)", 0.9), ws("focal", 0.7))),
             CellSummary("d", "gru", "adam", (ws("focal", 0.5),)))  # fmt: skip
    summary = Summary("balanced_accuracy", True, cells, "", 6, 0)
    # focal wins mlp/sgd (the first cell) but power(a=1) has the best mean over mlp's cells
    assert an.arch_best(summary, "mlp") == "power(a=1)"
    assert an.arch_best(summary, "gru") == "focal" and an.arch_best(summary, "lstm") is None


def test_failures_and_model_uses():
    ok = TrialResult(_cfg("none", model_params=(("hidden", 8),)), "done")
    ldam = TrialResult(_cfg("ldam", model_params=(("head", "cosine"), ("hidden", 8))), "done")
    bad = TrialResult(_cfg("power", 1.0, 4, model_params=(("hidden", 8),)), "failed",
                      reason="non-finite loss at epoch 3")  # fmt: skip
    fails = an.failures([ok, bad, ldam])
    assert fails == [an.FailedTrial(bad.config.trial_id, "mlp", "adam", "power(a=1)", 4,
                                    "non-finite loss at epoch 3")]  # fmt: skip
    uses = an.model_uses([ok, bad, ldam])
    assert {(u.arch, u.params, u.weightings) for u in uses} == {
        ("mlp", (("hidden", 8),), frozenset({"none", "power"})),
        ("mlp", (("head", "cosine"), ("hidden", 8)), frozenset({"ldam"})),
    }


# -- the whole analysis of a real tiny study -----------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    with SQLiteStore(tiny_store_path(), create=False) as store:
        return an.analyze(store, diagnostics=False), list(store.results()), store.meta()


def test_analyze_reads_the_store(tiny):
    a, results, meta = tiny
    assert a.n_trials == len(results) == 24 and a.n_done == 24 and a.n_failed == 0
    assert a.archs == ["mlp", "gru"] and a.optimizers == ["sgd", "adam"]
    assert a.data.train_counts == meta["data"]["train_counts"]
    assert a.data.class_names == [str(c) for c in meta["data"]["class_names"]]
    assert a.summary is not None and len(a.best) == 4
    assert a.data_errors == {} and a.gradients == [] and a.failures == []
    n_test = meta["data"]["n_test"]
    for c in a.calibration:
        trials = [r for r in results if r.config.arch == c.arch]
        assert sum(sum(rb.count) for rb in c.reliability.values()) == n_test * len(trials)
        assert c.adjusted_score.n == sum(1 for r in trials if r.config.weighting == "none")
    assert set(a.recall) == {"mlp", "gru"}
    for rows in a.recall.values():
        assert all(len(r) == len(a.data.class_names) for r in rows.values())
