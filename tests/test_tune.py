"""weightlab.tune: the space from the registries, Optuna's batch ask-and-tell, pruning, judging.

Real Optuna studies and real training on digits-lt throughout (tiny models,
few epochs); the references are the registries (ranges), the engine trained
without a tuner (pruned slices), and the store (nothing finished is lost).
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from weightlab.errors import InvalidValueError
from weightlab.lab.store import MemoryStore
from weightlab.lab.stores import open_store
from weightlab.lab.weightings import LOSS_WEIGHTINGS, resolve_weighting
from weightlab.losses import LOSSES
from weightlab.tune import SAMPLERS, SearchSpace, TuneSpec, default_families, run_tuning
from weightlab.tune.run import journal_path
from weightlab.tune.source import INTERRUPTED, TRIAL_ID
from weightlab.weights import SCHEMES

pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(**kw):
    base = dict(
        trials=8, batch=4, epochs=4, judge_seeds=(1, 2), model_params={"mlp": {"hidden": 16}}
    )
    return TuneSpec(**(base | kw))


# -- the space ------------------------------------------------------------------


def test_default_families_leave_out_power_aliases_and_keep_every_lab_loss():
    fams = default_families()
    assert fams[:2] == ("none", "power")
    for alias in ("balanced", "inverse", "sqrt_inverse", "uniform", "median_frequency"):
        assert alias not in fams
    assert "effective_number" in fams and "log" in fams  # schemes with parameters of their own
    assert set(LOSS_WEIGHTINGS) <= set(fams)


def test_every_parameter_and_range_comes_from_the_registries():
    space = SearchSpace()
    for fam in space.families:
        got = space.param_ranges(fam)
        if fam in LOSS_WEIGHTINGS:
            info = LOSSES.info(fam)
            want = dict(info.params)
            if info.class_weight is not None:
                want["alpha"] = SCHEMES.params("power")["alpha"]
            if info.deferred_reweighting is not None:
                want["drw_start"] = info.deferred_reweighting
        else:
            want = dict(SCHEMES.params(fam)) if fam in SCHEMES else {}
        assert got == want, fam
    assert space.param_ranges("ldam")["drw_start"].default == 0.8  # Cao et al.: 160 of 200


def test_every_proposal_resolves_and_stays_in_its_ranges(digits):
    space = SearchSpace(lr=(1e-4, 1e-1), weight_decay=(1e-6, 1e-2))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    base = _spec().base("mlp", "adam")
    seen = set()
    for _ in range(120):
        trial = study.ask()
        point = space.suggest(trial)
        cfg = point.apply(base)
        w = resolve_weighting(cfg, digits.train_counts)
        assert np.isfinite(w.class_weight).all() and w.class_weight.min() > 0
        ranges = space.param_ranges(cfg.weighting)
        for name, value in cfg.params:
            assert ranges[name].low <= value <= ranges[name].high, (cfg.weighting, name, value)
        if cfg.alpha is not None:
            assert ranges["alpha"].low <= cfg.alpha <= ranges["alpha"].high
        assert 1e-4 <= cfg.lr <= 1e-1 and 1e-6 <= cfg.weight_decay <= 1e-2
        if cfg.weighting == "ldam":
            assert dict(cfg.model_params)["head"] == "cosine"
        seen.add(cfg.weighting)
        study.tell(trial, 0.0)
    assert seen == set(space.families)


def test_narrowed_and_fixed_ranges_are_what_is_drawn():
    space = SearchSpace(
        families=("focal", "effective_number"),
        ranges={"focal.gamma": (1.0, 1.0), "effective_number.beta": (0.99, 0.999)},
    )
    assert space.param_ranges("focal")["gamma"].low == space.param_ranges("focal")["gamma"].high
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        t = study.ask()
        p = space.suggest(t)
        params = dict(p.params)
        if p.weighting == "focal":
            assert params["gamma"] == 1.0
        else:
            assert 0.99 <= params["beta"] <= 0.999
        study.tell(t, 0.0)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"families": ("focal", "nope")}, "Expected `weightings` to be among"),
        ({"families": ()}, "Expected `weightings` to name at least one weighting"),
        ({"ranges": {"focal.beta": (0, 1)}}, "Expected `ranges` to name a family.param"),
        ({"ranges": {"focal.gamma": (3, 1)}}, "Expected `focal.gamma` to be a non-empty range"),
        ({"ranges": {"focal.gamma": "wide"}}, "Expected `focal.gamma` to be a (low, high) pair"),
        ({"lr": (0.0, 1.0)}, "Expected `lr` to be a non-empty range low <= high of positive"),
    ],
)
def test_a_bad_space_names_the_argument_and_the_fix(kw, message):
    with pytest.raises(InvalidValueError) as err:
        SearchSpace(**kw)
    assert str(err.value).startswith(message)
    assert any(w in str(err.value) for w in ("Fix", "Drop", "Give", "Pick", "Pass"))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"trials": 0}, "Expected `trials` to be an integer >= 1, but got 0. Give a budget"),
        ({"batch": 0}, "Expected `batch` to be an integer >= 1"),
        ({"metrics": ("accuracy", "nope")}, "Expected `metric` to be among"),
        ({"sampler": "bayes"}, "Expected `sampler` to be one of"),
        ({"pruner": "asha"}, "Expected `pruner` to be one of"),
        ({"archs": ("transformer",)}, "Expected `archs` to be among"),
    ],
)
def test_bad_settings_are_refused_before_any_training(kw, message):
    with pytest.raises(InvalidValueError) as err:
        _spec(**kw)
    assert str(err.value).startswith(message)


# -- a search, end to end ---------------------------------------------------------


def test_search_uses_validation_only_and_judging_reports_gains(digits):
    store = MemoryStore()
    out = run_tuning(_spec(pruner="none"), store, data=digits)
    cell = out.cells[0]
    assert (cell.trials, cell.done, cell.pruned, cell.failed) == (8, 8, 0, 0)
    search = [r for r in store.results() if r.extra.get("tune_role") == "search"]
    judge = [r for r in store.results() if r.extra.get("tune_role") == "judge"]
    assert search and all(not r.metrics and not r.test_logits for r in search)
    assert all("val_metrics" in r.extra for r in search)
    roles = [j.role for j in cell.judged]
    assert roles[0] == "chosen" and set(roles) >= {"none", "balanced"} - {cell.judged[0].label}
    assert {r.config.seed for r in judge} == {1, 2}
    chosen = cell.judged[0]
    # the chosen one is the best on validation among the search trials
    best = max(r.extra["val_metrics"]["balanced_accuracy"] for r in search)
    assert chosen.val == [pytest.approx(best)]
    # the gain is the paired mean difference of the stored test metrics
    none = next(j for j in cell.judged if j.role == "none")
    if chosen.label != "none":
        diffs = np.array(chosen.test) - np.array(none.test)
        est, low, high = chosen.gain_vs_none
        assert est == pytest.approx(diffs.mean()) and low <= est <= high
    assert list(chosen.class_weight) == list(digits.class_names)
    assert chosen.loss.startswith("weightlab.losses.")
    assert store.get_meta("tune")["cells"][0]["cell"] == "mlp/adam"


def test_pruned_slices_are_stored_pruned_and_save_epochs(digits, tmp_path):
    path = tmp_path / "t.sqlite"
    with open_store(path) as store:
        out = run_tuning(
            _spec(trials=16, batch=8, epochs=8, judge_seeds=()), store, store_path=path, data=digits
        )
        pruned = [r for r in store.results() if r.status == "pruned"]
    cell = out.cells[0]
    assert cell.pruned == len(pruned) > 0
    assert all(0 < len(r.val_metric) < 8 and r.reason.startswith("pruned at epoch") for r in pruned)
    assert 0 < out.pruning_saving < 1
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal_path(path)))
    )
    study = optuna.load_study(study_name=cell.study_name, storage=storage)
    states = {t.user_attrs[TRIAL_ID]: t for t in study.trials}
    for r in pruned:  # Optuna was told: pruned, with the slice's per-epoch values
        t = states[r.config.trial_id]
        assert t.state == optuna.trial.TrialState.PRUNED
        assert [t.intermediate_values[e] for e in sorted(t.intermediate_values)] == pytest.approx(
            r.val_metric
        )


def test_a_pruned_slice_trains_like_the_unpruned_stack_until_it_stops(digits):
    from weightlab.lab.engine import train_stack

    store = MemoryStore()
    run_tuning(_spec(trials=16, batch=8, epochs=8, judge_seeds=()), store, data=digits)
    pruned = [r for r in store.results() if r.status == "pruned"][:2]
    for r in pruned:
        w = resolve_weighting(r.config, digits.train_counts)
        late = w.late_class_weight is not None
        alone = train_stack(
            digits,
            [r.config],
            [w.class_weight],
            loss_fn=[w.loss],
            evaluate_test=False,
            late_class_weights=[w.late_class_weight] if late else None,
            drw_epochs=[w.drw_epoch(8)] if late else None,
        )[0]
        n = len(r.val_metric)
        assert r.val_metric == pytest.approx(alone.val_metric[:n], abs=1e-5)


def test_several_metrics_give_a_pareto_front_without_pruning(digits):
    out = run_tuning(
        _spec(metrics=("balanced_accuracy", "ece"), judge_seeds=(1,)), MemoryStore(), data=digits
    )
    cell = out.cells[0]
    assert cell.pruned == 0 and cell.pareto
    front = np.array(cell.pareto)
    for a in front:  # no point of the front dominates another (BA up, ECE down)
        assert not any((b[0] >= a[0] and b[1] <= a[1]) and (b != a).any() for b in front)
    assert 1 <= sum(j.role == "chosen" for j in cell.judged) <= 3


@pytest.mark.parametrize("sampler", [s for s in SAMPLERS if s != "tpe"])
def test_every_sampler_runs_by_name(digits, sampler):
    out = run_tuning(
        _spec(sampler=sampler, trials=4, judge_seeds=(), pruner="none"), MemoryStore(), data=digits
    )
    assert out.cells[0].trials == 4


def test_a_diverging_trial_is_told_failed_and_the_tuning_goes_on(digits):
    store = MemoryStore()
    out = run_tuning(
        _spec(optimizers=("sgd",), lr=1e6, trials=4, judge_seeds=(1,)), store, data=digits
    )
    cell = out.cells[0]
    assert cell.failed == 4 and cell.judged == []
    assert all(r.status == "failed" and "non-finite" in r.reason for r in store.results())


def test_identical_proposals_train_once(digits):
    store = MemoryStore()
    out = run_tuning(
        _spec(
            space=SearchSpace(families=("none", "balanced_softmax"), class_weighted_losses=False),
            trials=6,
            judge_seeds=(),
        ),
        store,
        data=digits,
    )
    assert out.cells[0].trials == 6
    search = [r for r in store.results() if r.extra.get("tune_role") == "search"]
    assert len(search) == 2  # two distinct configurations, each trained once


def test_a_rerun_resumes_and_a_larger_budget_continues(digits, tmp_path):
    path = tmp_path / "t.sqlite"
    with open_store(path) as store:
        first = run_tuning(_spec(trials=4, judge_seeds=()), store, store_path=path, data=digits)
    assert journal_path(path).is_file() and first.cells[0].trials == 4
    with open_store(path) as store:
        ids = set(store.statuses())
        again = run_tuning(_spec(trials=4, judge_seeds=()), store, store_path=path, data=digits)
        assert set(store.statuses()) == ids  # nothing new to train
        more = run_tuning(_spec(trials=8, judge_seeds=()), store, store_path=path, data=digits)
        assert set(store.statuses()) > ids
    assert again.cells[0].trials == 4 and more.cells[0].trials == 8


def test_a_trial_left_running_is_asked_again_with_its_parameters(digits, tmp_path):
    path = tmp_path / "t.sqlite"
    spec = _spec(trials=4, judge_seeds=())
    with open_store(path) as store:
        run_tuning(spec, store, store_path=path, data=digits)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal_path(path)))
    )
    name = optuna.get_all_study_names(storage)[0]
    study = optuna.load_study(study_name=name, storage=storage)
    stale = study.ask()  # a run killed after asking, before telling
    params = SearchSpace().suggest(stale)
    with open_store(path) as store:
        out = run_tuning(_spec(trials=5, judge_seeds=()), store, store_path=path, data=digits)
    study = optuna.load_study(study_name=name, storage=storage)
    old = study.trials[stale.number]
    assert old.state == optuna.trial.TrialState.FAIL and old.user_attrs[INTERRUPTED]
    retried = [t for t in study.trials if t.number > stale.number]
    assert retried and retried[0].params == old.params
    assert out.cells[0].trials == 5
    assert params.weighting == retried[0].params["weighting"]


def test_validation_without_a_class_is_refused_before_training(digits):
    from dataclasses import replace

    keep = digits.y_val != 9
    broken = replace(digits, x_val=digits.x_val[keep], y_val=digits.y_val[keep])
    with pytest.raises(InvalidValueError) as err:
        run_tuning(_spec(), MemoryStore(), data=broken)
    assert str(err.value).startswith("Expected `val` to hold every class")
    assert "'9'" in str(err.value) and "Add examples" in str(err.value)


def test_intervals_are_nan_with_one_seed(digits):
    out = run_tuning(_spec(trials=4, judge_seeds=(1,), pruner="none"), MemoryStore(), data=digits)
    chosen = out.cells[0].judged[0]
    if chosen.gain_vs_none is not None:
        assert math.isnan(chosen.gain_vs_none[1])
