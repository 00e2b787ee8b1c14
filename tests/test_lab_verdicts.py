"""The verdict statistics against independent references (scipy, scikit-learn, brute force)."""

import itertools
import math

import numpy as np
import pytest
import torch
from imblearn.metrics import geometric_mean_score
from scipy import stats
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from weightlab.lab import verdicts as v
from weightlab.lab.architectures import build_stacked
from weightlab.lab.data import load_data
from weightlab.lab.engine import epoch_orders, train_stack
from weightlab.lab.trial import TrialConfig
from weightlab.lab.weightings import resolve_weighting

# -- intervals ------------------------------------------------------------------------


@pytest.mark.parametrize("d", [[0.1, 0.14, 0.12], [0.3, -0.1], [0.05, 0.02, 0.09, 0.01, 0.04]])
def test_gain_interval_without_test_noise_is_the_paired_t_interval(d):
    rng = np.random.default_rng(0)
    b = rng.normal(0.5, 0.1, len(d))
    a = b + np.asarray(d)
    ref = stats.ttest_rel(a, b).confidence_interval(0.95)
    g = v.gain_interval(a - b)
    assert g.estimate == pytest.approx(np.mean(d))
    assert (g.low, g.high) == pytest.approx((ref.low, ref.high))
    assert g.df == pytest.approx(len(d) - 1)


def test_gain_interval_adds_the_test_variance_with_satterthwaite_df():
    d = np.array([0.1, 0.14, 0.12])
    seed_var = d.var(ddof=1) / 3
    g = v.gain_interval(d, test_var=seed_var)  # equal parts: SE^2 doubles, df = 2 * 2^2
    assert g.df == pytest.approx(8.0)
    half = stats.t.ppf(0.975, 8.0) * math.sqrt(2 * seed_var)
    assert (g.low, g.high) == pytest.approx((0.12 - half, 0.12 + half))
    assert g.half_width > v.gain_interval(d).half_width * 0.5  # wider SE, but more df
    # one seed: no interval; no seed noise at all: the test term with a normal quantile
    assert math.isnan(v.gain_interval([0.2]).low)
    flat = v.gain_interval([0.1, 0.1], test_var=0.0004)
    assert flat.half_width == pytest.approx(stats.norm.ppf(0.975) * 0.02)


def test_difference_interval_is_welch_without_test_noise():
    a, b = np.array([0.3, 0.36, 0.33]), np.array([0.1, 0.2, 0.12, 0.15])
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    g = v.difference_interval(a, b)
    assert (g.low, g.high) == pytest.approx((ref.low, ref.high))
    wider = v.difference_interval(a, b, test_var=0.001)
    assert wider.low < g.low and wider.high > g.high


def test_seeds_needed_is_the_first_n_whose_half_width_is_below_d():
    n = v.seeds_needed(0.02, 0.0, 0.1)
    half = lambda k: stats.t.ppf(0.975, k - 1) * math.sqrt(0.02 / k)  # noqa: E731
    assert half(n) < 0.1 <= half(n - 1)
    # the test split's noise alone (1.96 * 0.06 > 0.1) cannot be averaged away by seeds
    assert v.seeds_needed(0.02, 0.06**2, 0.1) is None
    assert v.seeds_needed(0.02, 0.0, 0.0) is None


# -- metrics from predictions (for the test-row bootstrap) --------------------------------


def test_metric_from_predictions_matches_scikit_learn_and_imblearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, (6, 80))
    pred = np.where(rng.random((6, 80)) < 0.6, y, rng.integers(0, 5, (6, 80)))
    pred[0, pred[0] == 4] = 3  # class 4 never predicted in row 0
    for i in range(6):
        assert v.metric_from_predictions(pred, y, 5, "balanced_accuracy")[i] == pytest.approx(
            balanced_accuracy_score(y[i], pred[i]))  # fmt: skip
        assert v.metric_from_predictions(pred, y, 5, "macro_f1")[i] == pytest.approx(
            f1_score(y[i], pred[i], average="macro", zero_division=0))  # fmt: skip
        assert v.metric_from_predictions(pred, y, 5, "accuracy")[i] == pytest.approx(
            accuracy_score(y[i], pred[i]))  # fmt: skip
        assert v.metric_from_predictions(pred, y, 5, "gmean")[i] == pytest.approx(
            geometric_mean_score(y[i], pred[i], labels=list(range(5)), average="multiclass"))
    recall3 = [np.mean(pred[i][y[i] == 3] == 3) for i in range(6)]
    recall4 = [np.mean(pred[i][y[i] == 4] == 4) for i in range(6)]
    np.testing.assert_allclose(v.metric_from_predictions(pred, y, 5, "tail_recall", [3, 4]),
                               (np.array(recall3) + np.array(recall4)) / 2)  # fmt: skip
    with pytest.raises(ValueError, match="not computed from predictions"):
        v.metric_from_predictions(pred, y, 5, "ece")


def test_bootstrap_rows_resample_with_replacement_reproducibly():
    a, b = v.bootstrap_rows(50, 200, seed=4), v.bootstrap_rows(50, 200, seed=4)
    assert a.shape == (200, 50) and np.array_equal(a, b)
    assert a.min() >= 0 and a.max() < 50
    assert np.mean([len(set(r)) for r in a]) == pytest.approx(50 * (1 - (49 / 50) ** 50), rel=0.03)


# -- probability of being best ------------------------------------------------------------


def _brute_prob_best(values, higher=True):
    v_ = np.asarray(values, dtype=float) * (1 if higher else -1)
    n, k = v_.shape
    wins = np.zeros(k)
    for draw in itertools.product(range(n), repeat=n):  # every ordered draw, probability n^-n
        m = v_[list(draw)].mean(0)
        top = np.isclose(m, m.max(), rtol=0, atol=1e-12)
        wins += top / top.sum()
    return wins / n**n


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_prob_best_is_the_exact_bootstrap_probability(n):
    rng = np.random.default_rng(n)
    vals = rng.normal(0.7, 0.05, (n, 4))
    np.testing.assert_allclose(v.prob_best(vals), _brute_prob_best(vals), atol=1e-12)
    np.testing.assert_allclose(v.prob_best(vals, higher_is_better=False),
                               _brute_prob_best(vals, higher=False), atol=1e-12)  # fmt: skip
    assert v.prob_best(vals).sum() == pytest.approx(1.0)


def test_prob_best_by_monte_carlo_above_eight_seeds():
    rng = np.random.default_rng(9)
    vals = np.stack([rng.normal(0.70, 0.02, 10), rng.normal(0.72, 0.02, 10)], 1)
    p = v.prob_best(vals, n_boot=4000)
    assert p.sum() == pytest.approx(1.0)
    # a clear winner in every seed wins every replicate
    clear = v.prob_best(np.stack([np.full(10, 0.9), np.full(10, 0.5)], 1))
    assert clear.tolist() == pytest.approx([1.0, 0.0])
    # the normal approximation of the paired difference's bootstrap distribution
    d = vals[:, 1] - vals[:, 0]
    approx = stats.norm.cdf(d.mean() / (d.std(ddof=0) / math.sqrt(10)))
    assert p[1] == pytest.approx(approx, abs=0.05)


# -- interaction test, Holm ---------------------------------------------------------------


def test_heterogeneity_statistic_is_scipys_f_and_p_is_the_permutation_share():
    groups = [[0.10, 0.12, 0.30], [0.31, 0.29], [0.2, 0.25, 0.5]]
    t = v.heterogeneity_test(groups)
    assert t.statistic == pytest.approx(stats.f_oneway(*groups).statistic)
    # exact: 8! / (3! 2! 3!) = 560 distinct groupings, enumerated by hand here
    values = np.concatenate(groups)
    n_hit = total = 0
    for first in itertools.combinations(range(8), 3):
        rest = [i for i in range(8) if i not in first]
        for second in itertools.combinations(rest, 2):
            third = [i for i in rest if i not in second]
            f = stats.f_oneway(values[list(first)], values[list(second)], values[third]).statistic
            n_hit += f >= t.statistic * (1 - 1e-12)
            total += 1
    assert t.n_perm == total == 560
    assert t.p_value == pytest.approx(n_hit / total)


def test_heterogeneity_by_monte_carlo_agrees_with_scipy_permutation_test():
    rng = np.random.default_rng(2)
    groups = [rng.normal(mu, 0.05, 2) for mu in (0.1, 0.15, 0.1, 0.3, 0.12, 0.11)]
    t = v.heterogeneity_test(groups, n_perm=4999, seed=1)
    ref = stats.permutation_test(groups, lambda *g: stats.f_oneway(*g).statistic,
                                 permutation_type="independent", n_resamples=4999,
                                 alternative="greater", random_state=1)  # fmt: skip
    assert t.statistic == pytest.approx(ref.statistic)
    assert t.p_value == pytest.approx(ref.pvalue, abs=0.02)
    same = v.heterogeneity_test([rng.normal(0.2, 0.05, 2) for _ in range(6)], n_perm=999)
    assert same.p_value > 0.01


def test_holm_by_hand():
    assert v.holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert v.holm([0.5]) == [0.5]
    assert v.holm([0.2, 0.9, 0.01, 0.04]) == [0.4, 0.9, 0.04, 0.12]


def test_near_chance_margin():
    assert v.normalized_chance(0.1, 10) == pytest.approx(0.0)
    assert v.normalized_chance(1.0, 10) == pytest.approx(1.0)
    assert v.is_near_chance(0.28, 10) and not v.is_near_chance(0.29, 10)
    assert v.is_near_chance(0.6, 2) and not v.is_near_chance(0.61, 2)


# -- the pairing the statistics rely on ------------------------------------------------------


def test_trials_sharing_a_seed_start_alike_and_see_the_same_batches():
    """Same seed, different weightings: identical initial parameters and identical batches."""
    data = load_data("digits-lt")
    cfgs = [TrialConfig("digits-lt", "mlp", "sgd", w, a, seed=s, epochs=2,
                        model_params=(("hidden", 8),))
            for w, a, s in (("none", None, 3), ("power", 1.0, 3), ("focal", None, 3),
                            ("none", None, 4))]  # fmt: skip
    model = build_stacked("mlp", (64,), 10, [c.seed for c in cfgs], hidden=8)
    for p in model.parameters():  # slices 0, 1, 2 (seed 3) equal; slice 3 (seed 4) differs
        assert torch.equal(p[0], p[1]) and torch.equal(p[0], p[2])
        assert not torch.equal(p[0], p[3])
    orders = [epoch_orders(c.seed, c.epochs, len(data.y_train)) for c in cfgs]
    assert torch.equal(orders[0], orders[1]) and torch.equal(orders[0], orders[2])
    assert not torch.equal(orders[0], orders[3])
    # and the engine uses exactly these: with weights that coincide (power(0) = none),
    # the two seed-3 slices train to identical models, the seed-4 one does not
    same = [cfgs[0], TrialConfig("digits-lt", "mlp", "sgd", "power", 0.0, seed=3, epochs=2,
                                 model_params=(("hidden", 8),)), cfgs[3]]  # fmt: skip
    w = np.stack([resolve_weighting(c, data.train_counts).class_weight for c in same])
    res = train_stack(data, same, w)
    z = [np.asarray(r.test_logits) for r in res]
    np.testing.assert_allclose(z[0], z[1], atol=1e-5)  # batched matmuls: float rounding only
    assert np.abs(z[0] - z[2]).max() > 0.1
