import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from weightlab.errors import InvalidValueError
from weightlab.lab import summary as summary_mod
from weightlab.lab.metrics import compute_metrics
from weightlab.lab.sources import GridSource, TrialSource
from weightlab.lab.store import MemoryStore
from weightlab.lab.store_sqlite import SQLiteStore
from weightlab.lab.study import (
    PRESETS,
    EngineTrainer,
    StudySpec,
    group_stacks,
    resolve_weighting,
    run_study,
    summarize,
    weighting_label,
)
from weightlab.lab.trial import TrialConfig, TrialResult
from weightlab.weights import class_weights

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "study.toml"

TINY = {
    "archs": ["mlp"],
    "optimizers": ["sgd", "adam"],
    "weightings": ["none", "balanced"],
    "seeds": [0],
    "epochs": 1,
    "model_params": {"mlp": {"hidden": 8, "layers": 1}},
}


# -- spec ------------------------------------------------------------------------------


def test_quick_preset_is_default_and_grid_size():
    quick = StudySpec.preset("quick")
    assert quick == StudySpec(
        model_params={"gru": {"hidden": 32}}, epochs=40, patience=8,
        lrs={"sgd": (0.05, 0.1), "adam": (3e-3, 1e-2), "rmsprop": (1e-3, 3e-3)},
    )  # fmt: skip
    assert quick.archs == ("mlp", "cnn", "gru")
    assert quick.optimizers == ("sgd", "adam", "rmsprop")
    assert quick.strengths == (0.25, 0.5, 1.0)
    # 3 archs x 3 optimizers x 2 lrs x (none + 3 powers + focal + logit_adjusted + ldam) x 2 seeds
    assert quick.num_trials == len(quick.trials()) == 252
    # per arch x optimizer: both learning rates in one stack (per-slice rates): 24 linear-head
    # trials, and 4 cosine-head LDAM trials
    assert sorted(len(s) for s in group_stacks(quick.trials())) == [4] * 9 + [24] * 9
    assert {c.patience for c in quick.trials()} == {8}
    full = PRESETS["full"]
    assert full.num_trials == len(full.trials()) > quick.num_trials


def test_trials_expand_power_over_strengths_and_ids_are_unique():
    spec = StudySpec(**{**TINY, "weightings": ["none", "power"], "strengths": [0.5, 1.0]})
    cfgs = spec.trials()
    assert [(c.optimizer, c.weighting, c.alpha) for c in cfgs] == [
        ("sgd", "none", None), ("sgd", "power", 0.5), ("sgd", "power", 1.0),
        ("adam", "none", None), ("adam", "power", 0.5), ("adam", "power", 1.0),
    ]  # fmt: skip
    assert len({c.trial_id for c in cfgs}) == len(cfgs)
    assert cfgs[0].model_params == (("hidden", 8), ("layers", 1))
    stacks = group_stacks(cfgs)
    assert [len(s) for s in stacks] == [3, 3]
    assert all(len({c.stack_key for c in s}) == 1 for s in stacks)


def test_from_toml_example_and_overrides():
    spec = StudySpec.from_toml(EXAMPLE)
    assert spec.weightings == ("none", "effective_number", "power", "focal", "logit_adjusted")
    assert spec.strengths == (0.25, 0.5, 1.0)
    assert spec.data_params == {"imbalance_ratio": 20.0}
    assert spec.model_params["mlp"] == {"hidden": 64, "layers": 2}
    assert StudySpec.from_toml(EXAMPLE, epochs=2, seeds=[7]).seeds == (7,)
    assert StudySpec.from_toml(EXAMPLE, preset="full").epochs == 10  # the file wins over presets


def test_an_lr_grid_trains_every_rate_and_the_summary_compares_each_at_its_best():
    from weightlab.lab.summary import choose_learning_rates

    spec = StudySpec(archs=["mlp"], optimizers=["sgd"], weightings=["none", "focal"], seeds=[0],
                     lrs={"sgd": [0.001, 0.1], "adam": [0.01]}, epochs=3)  # fmt: skip
    assert sorted({c.lr for c in spec.trials()}) == [0.001, 0.1] and spec.num_trials == 4
    results = run_study_results(spec)
    kept, choices = choose_learning_rates(results, "balanced_accuracy", lambda r: 10)
    assert len(kept) == 2 and {ch.weighting for ch in choices} == {"none", "focal"}
    for ch in choices:  # the chosen rate is the one best on validation
        assert ch.scores[ch.chosen] == max(ch.scores.values())
    with pytest.raises(InvalidValueError, match="Expected `lrs` to map optimizers"):
        StudySpec(lrs={"sgdd": [0.1]})
    with pytest.raises(InvalidValueError, match="Expected `patience` to be None or an integer"):
        StudySpec(patience=0)


def run_study_results(spec):
    from weightlab.lab.store import MemoryStore
    from weightlab.lab.study import run_study

    store = MemoryStore()
    run_study(spec, store, diagnostics=False)
    return store.results()


def test_from_toml_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('archs = ["mlp"]\nepoch = 3\n')
    with pytest.raises(InvalidValueError) as info:
        StudySpec.from_toml(bad)
    assert str(info.value).startswith("Expected `config` to have only the keys 'preset', ")
    assert str(info.value).endswith(f"but got 'epoch' in '{bad}'. Remove or rename them.")
    missing = tmp_path / "none.toml"
    with pytest.raises(InvalidValueError) as info:
        StudySpec.from_toml(missing)
    assert str(info.value) == (
        f"Expected `config` to be an existing TOML study file, but got '{missing}' (no such "
        "file). Check the path; examples/study.toml is a template."
    )
    broken = tmp_path / "broken.toml"
    broken.write_text("archs = [")
    with pytest.raises(InvalidValueError, match=r"^Expected `config` to be valid TOML"):
        StudySpec.from_toml(broken)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"archs": ["mlp", "vit"]},
            "Expected `archs` to be among 'mlp', 'cnn', 'gru', 'lstm', but got 'vit'. "
            "Pick from those names.",
        ),
        (
            {"optimizers": ["lbfgs"]},
            "Expected `optimizers` to be among 'sgd', 'adam', 'adamw', 'rmsprop', but got "
            "'lbfgs'. Pick from those names.",
        ),
        (
            {"seeds": [0, 0]},
            "Expected `seeds` to hold each value once, but got [0, 0]. Remove the duplicates.",
        ),
        (
            {"strengths": [-1.0]},
            "Expected `strengths` to be finite numbers >= 0, but got -1.0. "
            "Use alphas like 0, 0.5, 1 (weights ~ n_c^-alpha).",
        ),
        (
            {"strengths": []},
            "Expected `strengths` to hold at least one alpha when 'power' is a weighting, but "
            "got []. Pass e.g. strengths 0,0.5,1, or drop 'power'.",
        ),
        ({"epochs": 0}, "Expected `epochs` to be an integer >= 1, but got 0. Pass e.g. epochs=8."),
        (
            {"lr": -0.1},
            "Expected `lr` to be a positive number or None, but got -0.1. "
            "Leave it unset for the optimizer's lab default.",
        ),
        (
            {"metric": "auc"},
            "Expected `metric` to be one of 'balanced_accuracy', 'macro_f1', 'tail_recall', "
            "'gmean', 'macro_auprc', 'accuracy', 'ece', but got 'auc'. Pick one of those.",
        ),
        (
            {"seeds": []},
            "Expected `seeds` to hold at least one value, but got []. Pass one or more.",
        ),
        (
            {"model_params": {"vit": {}}},
            "Expected `model_params` to map architectures ('mlp', 'cnn', 'gru', 'lstm') to "
            "option tables, but got {'vit': {}}. Use {'mlp': {'hidden': 64}}.",
        ),
    ],
)
def test_spec_errors(kw, message):
    with pytest.raises(InvalidValueError) as info:
        StudySpec(**kw)
    assert str(info.value) == message


def test_unknown_weighting_and_preset():
    with pytest.raises(InvalidValueError, match=r"^Expected `weightings` to be among 'none', "):
        StudySpec(weightings=["nope"])
    with pytest.raises(InvalidValueError) as info:
        StudySpec.preset("huge")
    assert str(info.value) == (
        "Expected `preset` to be one of 'quick', 'full', but got 'huge'. Pick one."
    )


def trial_class_weights(config, counts):
    return resolve_weighting(config, counts).class_weight


def test_trial_class_weights_come_from_weight_schemes():
    counts = np.array([100, 30, 10])
    none = TrialConfig("d", "mlp", "sgd", "none", None, 0)
    bal = TrialConfig("d", "mlp", "sgd", "balanced", None, 0)
    pw = TrialConfig("d", "mlp", "sgd", "power", 0.5, 0)
    assert trial_class_weights(none, counts).tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(trial_class_weights(bal, counts), class_weights(counts, "balanced"))
    np.testing.assert_allclose(
        trial_class_weights(pw, counts), class_weights(counts, "power", alpha=0.5)
    )
    assert weighting_label(pw) == "power(a=0.5)"


# -- running ---------------------------------------------------------------------------


def test_run_study_stores_every_trial_and_resume_skips_them(tmp_path):
    spec = StudySpec(**TINY)
    events = []
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        out = run_study(spec, store, progress=events.append, command=["weightlab", "study"])
        assert (out.total, out.ran, out.skipped, out.failed) == (4, 4, 0, 0)
        assert store.finished_ids() == {c.trial_id for c in spec.trials()}
        assert store.running_ids() == set()
        r = store.get(spec.trials()[0].trial_id)
        assert r.status == "done"
        assert set(r.metrics) >= {"balanced_accuracy", "macro_f1", "tail_recall", "ece"}
        assert len(r.test_logits) == 500 and len(r.train_loss) == 1
        meta = store.meta()
        assert meta["command"] == ["weightlab", "study"]
        assert meta["spec"]["archs"] == ["mlp"]
        assert meta["data"]["train_counts"] == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
        assert "torch" in meta["versions"]
    assert [e.done for e in events] == [0, 1, 2, 3, 4]
    assert events[0].result is None and events[-1].total == 4

    with SQLiteStore(tmp_path / "s.sqlite") as store:
        again = run_study(spec, store, train_stack=_must_not_train)
        assert (again.ran, again.skipped) == (0, 4)


def _must_not_train(data, configs):
    raise AssertionError(f"trained {len(configs)} stored trials again")


def test_resume_reruns_only_unfinished_trials():
    spec = StudySpec(**TINY)
    store = MemoryStore()
    first = spec.trials()[0]
    run_study(StudySpec(**{**TINY, "optimizers": ["sgd"], "weightings": ["none"]}), store)
    assert store.finished_ids() == {first.trial_id}
    store.mark_running(spec.trials())  # as a killed run would leave them
    seen = []

    def spy(data, configs):
        seen.extend(c.trial_id for c in configs)
        return EngineTrainer()(data, configs)

    out = run_study(spec, store, train_stack=spy)
    assert (out.ran, out.skipped) == (3, 1)
    assert first.trial_id not in seen and len(seen) == 3
    assert store.running_ids() == set()
    assert len(store) == 4


def test_the_stack_in_training_is_marked_running_and_nothing_else():
    spec = StudySpec(**TINY)
    store = MemoryStore()
    seen = []

    def spy(data, configs):
        seen.append((store.running_ids(), len(store)))
        return EngineTrainer()(data, configs)

    run_study(spec, store, train_stack=spy)
    stacks = [{c.trial_id for c in stack} for stack in group_stacks(spec.trials())]
    assert [running for running, _ in seen] == stacks  # a killed run leaves these to rerun
    assert [stored for _, stored in seen] == [0, len(stacks[0])]
    assert store.running_ids() == set()


def test_diverging_trials_are_stored_failed_and_the_study_goes_on():
    # lr=1e8 makes plain SGD overflow in the first epoch, while Adam's step stays bounded.
    spec = StudySpec(**{**TINY, "lr": 1e8, "model_params": {"mlp": {"hidden": 8, "layers": 2}}})
    store = MemoryStore()
    out = run_study(spec, store)
    assert out.failed == 2 and out.ran == 4
    by_opt = {}
    for r in store.results():
        by_opt.setdefault(r.config.optimizer, set()).add(r.status)
    assert by_opt == {"sgd": {"failed"}, "adam": {"done"}}
    failed = [r for r in store.results() if r.status == "failed"]
    assert all(r.reason.startswith("non-finite") for r in failed)
    s = summarize(store.results(), "balanced_accuracy")
    assert s.n_failed == 2 and s.n_done == 2
    assert "2 trial(s) failed (diverged)" in s.answer


def test_a_done_result_with_non_finite_loss_is_stored_failed():
    spec = StudySpec(**{**TINY, "optimizers": ["sgd"], "weightings": ["none"]})

    def nan_engine(data, configs):
        return [TrialResult(c, "done", train_loss=[1.0, math.nan]) for c in configs]

    store = MemoryStore()
    run_study(spec, store, train_stack=nan_engine)
    (r,) = store.results()
    assert r.status == "failed"
    assert r.reason == "non-finite training loss (nan) at epoch 2"


def test_metrics_are_filled_from_logits_when_the_engine_leaves_them_out():
    spec = StudySpec(**{**TINY, "optimizers": ["sgd"], "weightings": ["none"]})

    def logits_only(data, configs):
        eye = np.eye(10)[data.y_test.numpy()]
        return [TrialResult(c, "done", train_loss=[1.0], test_logits=eye.tolist()) for c in configs]

    store = MemoryStore()
    run_study(spec, store, train_stack=logits_only)
    (r,) = store.results()
    assert r.metrics["accuracy"] == 1.0 and r.per_class["recall"] == [1.0] * 10


@pytest.mark.slow
def test_workers_run_stacks_in_processes(tmp_path):
    spec = StudySpec(**TINY)
    with SQLiteStore(tmp_path / "w.sqlite") as store:
        out = run_study(spec, store, workers=2)
        assert out.ran == 4 and store.finished_ids() == {c.trial_id for c in spec.trials()}
    with pytest.raises(InvalidValueError) as info:
        run_study(spec, MemoryStore(), workers=0)
    assert str(info.value) == "Expected `workers` to be an integer >= 1, but got 0. Use 1 or more."


# -- summary ---------------------------------------------------------------------------


def _result(arch, opt, weighting, seed, value, alpha=None, status="done", val=None):
    cfg = TrialConfig("digits-lt", arch, opt, weighting, alpha, seed)
    if status == "failed":
        return TrialResult(cfg, "failed", reason="non-finite loss at epoch 1")
    if status != "done":
        return TrialResult(cfg, status)
    return TrialResult(cfg, "done", metrics={"balanced_accuracy": value, "ece": 1 - value},
                       val_metric=[(value if val is None else val) - 0.1,
                                   value if val is None else val])  # fmt: skip


def _grid():
    # mlp/sgd: balanced helps a lot; gru/adam: power(a=0.5) best, balanced hurts.
    vals = {
        ("mlp", "sgd"): {"none": (0.5, 0.52), "balanced": (0.7, 0.72), "power(0.5)": (0.6, 0.62)},
        ("gru", "adam"): {"none": (0.8, 0.8), "balanced": (0.74, 0.76), "power(0.5)": (0.85, 0.83)},
    }
    out = []
    for (arch, opt), by_w in vals.items():
        for w, seeds in by_w.items():
            for seed, v in enumerate(seeds):
                if w.startswith("power"):
                    out.append(_result(arch, opt, "power", seed, v, alpha=0.5))
                else:
                    out.append(_result(arch, opt, w, seed, v))
    return out


def test_summarize_ranks_on_validation_with_paired_gains_and_intervals():
    s = summarize(_grid(), "balanced_accuracy")
    assert [(c.arch, c.optimizer) for c in s.cells] == [("mlp", "sgd"), ("gru", "adam")]
    mlp = s.cells[0]
    assert [w.weighting for w in mlp.ranking] == ["balanced", "power(a=0.5)", "none"]
    top = mlp.ranking[0]
    assert top.mean == pytest.approx(0.71)
    assert top.std == pytest.approx(np.std([0.70, 0.72], ddof=1))
    assert top.gain == pytest.approx(0.20)
    # no logits stored: the interval is the paired t interval of the per-seed gains (0.2, 0.2)
    assert (top.gain_low, top.gain_high) == pytest.approx((0.2, 0.2))
    assert top.p_best == pytest.approx(1.0) and top.mark == "chosen"
    gru = s.cells[1]
    assert [w.weighting for w in gru.ranking] == ["power(a=0.5)", "none", "balanced"]
    assert gru.ranking[2].gain == pytest.approx(-0.05)
    ref = stats.ttest_rel([0.85, 0.83], [0.8, 0.8]).confidence_interval()
    assert (gru.ranking[0].gain_low, gru.ranking[0].gain_high) == pytest.approx((ref.low,
                                                                                  ref.high))
    assert "ranked on the best epoch of the stored validation curve" in s.answer
    assert "mlp/sgd: 'balanced' (P(best) 1.00, gain +0.200 [+0.200, +0.200]" in s.answer
    assert "twice the seed noise" not in s.answer and s.verdict in ("yes", "no", "inconclusive")


def test_validation_decides_the_ranking_not_test():
    # 'balanced' is better on test, 'power' on validation: the ranking follows validation
    res = [_result("mlp", "sgd", "none", s, 0.5, val=0.5) for s in (0, 1)]
    res += [_result("mlp", "sgd", "balanced", s, 0.8, val=0.6) for s in (0, 1)]
    res += [_result("mlp", "sgd", "power", s, 0.7, alpha=0.5, val=0.7) for s in (0, 1)]
    cell = summarize(res, "balanced_accuracy").cells[0]
    assert [w.weighting for w in cell.ranking] == ["power(a=0.5)", "balanced", "none"]
    assert cell.ranking[1].mark == "better on test"
    # stored validation metrics at the checkpoint epoch win over the curve
    for r in res:
        r.extra["val_metrics"] = {"balanced_accuracy": r.metrics["balanced_accuracy"]}
    s = summarize(res, "balanced_accuracy")
    assert s.cells[0].best.weighting == "balanced"
    assert s.selection == "validation balanced_accuracy at the checkpoint epoch"


def test_summarize_lower_is_better_metric_flips_the_gain_sign():
    s = summarize(_grid(), "ece")
    assert s.higher_is_better is False
    bal = next(w for w in s.cells[0].ranking if w.weighting == "balanced")
    assert bal.gain == pytest.approx(0.20)  # positive gain = better (lower ece)
    # no ece curve is stored: the ranking falls back to test, and says so
    assert s.cells[0].ranking[0].weighting == "balanced"
    assert "test ece (no validation scores are stored)" in s.answer


def test_a_network_dependent_weight_is_a_yes_and_a_uniform_one_a_no():
    rng = np.random.default_rng(0)
    res = []
    for arch, gain in (("mlp", 0.3), ("cnn", 0.3), ("gru", -0.1), ("lstm", -0.1)):
        for seed in range(3):
            base = 0.6 + rng.normal(0, 0.005)
            res.append(_result(arch, "sgd", "none", seed, base))
            res.append(_result(arch, "sgd", "balanced", seed, base + gain + rng.normal(0, 0.005)))
    s = summarize(res, "balanced_accuracy")
    assert s.verdict == "yes"
    assert "Does the same weight act differently in different networks? Yes: 'balanced'" in (
        s.answer)
    (inter,) = s.interactions
    assert inter.difference.estimate == pytest.approx(0.4, abs=0.02)
    assert inter.difference.excludes_zero and inter.p_holm < 0.05
    same = [_result(r.config.arch, "sgd", r.config.weighting, r.config.seed,
                    r.metrics["balanced_accuracy"] if r.config.weighting == "none"
                    or r.config.arch in ("mlp", "cnn")
                    else r.metrics["balanced_accuracy"] + 0.4) for r in res]  # fmt: skip
    s = summarize(same, "balanced_accuracy")
    assert s.verdict == "no", s.answer
    assert "No: every weighting's gain agrees between networks to within 0.02" in s.answer


def test_few_noisy_seeds_are_inconclusive_and_say_how_many_more():
    res = []
    for arch, gains in (("mlp", (0.3, -0.1)), ("cnn", (0.05, 0.0))):
        for seed, g in enumerate(gains):
            res.append(_result(arch, "adam", "none", seed, 0.6))
            res.append(_result(arch, "adam", "balanced", seed, 0.6 + g))
    s = summarize(res, "balanced_accuracy")
    assert s.verdict == "inconclusive"
    assert "Inconclusive with 2 seed(s); about " in s.answer
    assert "more seed(s) per cell" in s.answer and "would resolve a difference of 0.075" in (
        s.answer)
    assert s.interactions[0].seeds_needed > 2


def test_undertrained_cells_are_flagged_and_not_evidence():
    res = []
    for arch, base in (("mlp", 0.6), ("cnn", 0.62), ("gru", 0.2)):
        for seed in range(2):
            res.append(_result(arch, "sgd", "none", seed, base + 0.01 * seed))
            res.append(_result(arch, "sgd", "balanced", seed, base + 0.2 + 0.01 * seed))
    s = summarize(res, "balanced_accuracy")
    gru = next(c for c in s.cells if c.arch == "gru")
    assert gru.undertrained and gru.none_balanced_accuracy == pytest.approx(0.205)
    assert not any(c.undertrained for c in s.cells if c.arch != "gru")
    assert "Undertrained, so not used as evidence: gru/sgd (0.205)" in s.answer
    assert "at most 0.280" in s.answer
    assert s.interactions[0].cells == ("mlp/sgd", "cnn/sgd")


def test_summarize_one_cell_failed_and_pruned_trials_and_rows():
    res = [
        _result("mlp", "sgd", "none", 0, 0.5),
        _result("mlp", "sgd", "balanced", 0, 0.6),
        _result("mlp", "sgd", "balanced", 1, 0.0, status="failed"),
        _result("mlp", "sgd", "power", 0, 0.0, alpha=2.0, status="failed"),
        _result("mlp", "sgd", "power", 1, 0.0, alpha=2.0, status="pruned"),
    ]
    s = summarize(res, "balanced_accuracy")
    assert (s.n_done, s.n_failed, s.n_pruned) == (2, 2, 1)
    assert "Fewer than two trained cells" in s.answer
    assert "'balanced' (P(best) 1.00, gain +0.100 (one seed: no interval))" in s.answer
    assert "2 trial(s) failed (diverged) and are left out of the statistics." in s.answer
    assert "1 trial(s) were pruned (or not finished) and are counted apart, not used." in s.answer
    rows = s.rows()
    assert [(r["weighting"], r["rank"], r["n"], r["failed"]) for r in rows] == [
        ("balanced", 1, 1, 1), ("none", 2, 1, 0), ("power(a=2)", None, 0, 1),
    ]  # fmt: skip
    assert rows[2]["mean"] is None and rows[2]["gain_vs_none"] is None
    assert s.detail_rows()[2]["pruned"] == 1
    assert summarize([], "macro_f1").answer == "No trial finished, so there is nothing to compare."
    with pytest.raises(InvalidValueError, match=r"^Expected `metric` to be one of "):
        summarize(res, "auc")


def test_coinciding_weightings_are_one_entry_with_all_their_names():
    res = []
    for seed in range(2):
        res.append(_result("mlp", "sgd", "none", seed, 0.5))
        res.append(_result("mlp", "sgd", "power", seed, 0.7, alpha=1.0))
        res.append(_result("mlp", "sgd", "balanced", seed, 0.72))
        res.append(_result("mlp", "sgd", "logit_adjusted", seed, 0.6))
        res.append(_result("mlp", "sgd", "balanced_softmax", seed, 0.62))
        res.append(_result("mlp", "sgd", "power", seed, 0.0, alpha=0.0))
    cell = summarize(res, "balanced_accuracy").cells[0]
    labels = [w.weighting for w in cell.ranking]
    assert labels == ["power(a=1) = balanced", "logit_adjusted = balanced_softmax",
                      "none = power(a=0)"]  # fmt: skip
    assert cell.ranking[0].mean == pytest.approx(0.71) and cell.ranking[0].n == 2
    # effective_number differs from power(a=1) by 4 % on the head class at ratio 10: two entries
    groups = summary_mod.alias_groups(
        [TrialConfig("digits-lt", "mlp", "sgd", w, a, 0) for w, a in
         (("power", 1.0), ("effective_number", None), ("class_balanced", None))],
        [100, 77, 59, 46, 35, 27, 21, 16, 12, 10])  # fmt: skip
    assert ["class_balanced"] in groups and ["power(a=1)"] in groups


def test_test_row_bootstrap_widens_the_interval_of_a_small_test_split():
    """With stored logits, the interval adds the test rows' noise to the seeds'."""
    from weightlab.lab.data import load_data

    y = load_data("digits-lt").y_test.numpy()
    rng = np.random.default_rng(1)

    def logits(acc):
        pred = np.where(rng.random(len(y)) < acc, y, rng.integers(0, 10, len(y)))
        return np.eye(10)[pred].tolist()

    res = []
    for seed in range(3):
        for w, acc in (("none", 0.6), ("balanced", 0.7)):
            r = _result("mlp", "sgd", w, seed, 0.0)
            z = logits(acc)
            m, _ = compute_metrics(np.asarray(z), y, [100, 77, 59, 46, 35, 27, 21, 16, 12, 10])
            r.metrics.update(m)
            r.test_logits = z
            res.append(r)
    s = summarize(res, "balanced_accuracy")
    top = s.cells[0].ranking[0]
    d = [res[2 * k + 1].metrics["balanced_accuracy"] - res[2 * k].metrics["balanced_accuracy"]
         for k in range(3)]  # fmt: skip
    t_only = stats.ttest_rel(np.asarray(d), np.zeros(3)).confidence_interval()
    assert top.gain == pytest.approx(np.mean(d))
    assert (top.gain_high - top.gain_low) > 0 and "paired bootstrap of the test rows" in s.answer
    assert s.interval.startswith("95 % t interval over the paired per-seed differences plus")
    # the test term is there: the interval is not the seed-only one
    assert (top.gain_low, top.gain_high) != pytest.approx((t_only.low, t_only.high))


# -- trial sources ---------------------------------------------------------------------


class _FollowUp(TrialSource):
    """Hands out one stack, then, once told its results, a second one built from them."""

    def __init__(self, spec):
        self.first = next(spec.stacks())
        self.told = []
        self.stage = 0

    def ask(self):
        if self.stage == 0:
            self.stage = 1
            return self.first
        if self.stage == 1 and self.told:  # a follow-up chosen from the first results
            self.stage = 2
            best = max(self.told[0], key=lambda r: r.metrics["balanced_accuracy"])
            return [replace(best.config, seed=best.config.seed + 10)]
        return None  # waiting for results, or done

    def tell(self, results):
        self.told.append(results)


def test_a_source_can_hand_out_more_work_after_results_arrive():
    spec = StudySpec(**TINY)
    source = _FollowUp(spec)
    store = MemoryStore()
    out = run_study(spec, store, source=source)
    first_ids = [c.trial_id for c in source.first]
    assert out.ran == len(first_ids) + 1 and out.skipped == 0
    assert list(out.trial_ids[: len(first_ids)]) == first_ids
    assert [r.config.trial_id for r in source.told[0]] == first_ids
    follow = next(r for r in store.results() if r.config.trial_id not in first_ids)
    assert follow.config.seed == 10 and follow.status == "done"
    # rerun: the source plans nothing in advance, so the runner looks each stack up as it comes
    again = run_study(spec, store, source=_FollowUp(spec), train_stack=_must_not_train)
    assert (again.ran, again.skipped) == (0, len(first_ids))


def test_the_grid_source_hands_out_the_grid_stack_by_stack():
    spec = StudySpec(**{**TINY, "weightings": ["none", "ldam"], "seeds": [0, 1]})
    source = GridSource(spec)
    stacks = []
    while (stack := source.ask()) is not None:
        stacks.append([c.trial_id for c in stack])
    assert stacks == [[c.trial_id for c in s] for s in group_stacks(spec.trials())]
    assert source.total == spec.num_trials == sum(len(s) for s in stacks)
    assert source.planned_ids() == tuple(c.trial_id for c in spec.trials())
