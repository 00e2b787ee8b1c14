r"""The statistics behind a study's verdicts: paired gains, P(best), interaction tests.

Pure numpy/scipy maths on plain arrays; :mod:`weightlab.lab.summary` feeds it
the trials of a study and words the answer. Nothing here prints.

**Paired gains.** Trials that share a seed share their initialisation and
their data order across weightings (the engine builds slice ``k`` with
``build_model(..., seed)`` and draws its batches from ``epoch_orders(seed)``),
so the gain of weighting ``w`` over ``none`` in a cell is a *paired*
difference per seed, :math:`d_s = \sigma (m_{w,s} - m_{none,s})` (``sigma`` = +1
when higher is better, -1 otherwise).

**Two noises.** Seeds vary the model; the test split is one fixed sample of
rows that every trial is scored on, so seed-to-seed scatter does not show how
much the *test rows* move a metric. :func:`gain_interval` adds both:

.. math::
    \mathrm{SE}^2 = \frac{s_d^2}{n} + V_{test}, \qquad
    \bar d \pm t_{0.975,\,\nu}\, \mathrm{SE}, \qquad
    \nu = (n - 1) \Big(\frac{\mathrm{SE}^2}{s_d^2 / n}\Big)^2

where :math:`s_d` is the sample std of the paired differences over ``n``
seeds and :math:`V_{test}` the variance of :math:`\bar d` over a paired
bootstrap of the test rows (the same resampled rows for every trial,
:func:`bootstrap_rows`, :func:`metric_from_predictions`); ``nu`` is the
Welch-Satterthwaite degrees of freedom with the bootstrap term taken as known.
With :math:`V_{test} = 0` it is the paired t interval
(``scipy.stats.ttest_rel(...).confidence_interval()``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats  # type: ignore[import-untyped]  # scipy ships no stubs

__all__ = [
    "BOOTSTRAP_METRICS",
    "CHANCE_MARGIN",
    "EQUIVALENCE_MARGIN",
    "GainInterval",
    "HeterogeneityTest",
    "bootstrap_rows",
    "difference_interval",
    "gain_interval",
    "heterogeneity_test",
    "holm",
    "is_near_chance",
    "metric_from_predictions",
    "normalized_chance",
    "prob_best",
    "seeds_needed",
]

#: Metrics :func:`metric_from_predictions` computes from predicted classes.
BOOTSTRAP_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "tail_recall", "gmean")
#: A model is near chance when its balanced accuracy recovers at most this share of the
#: way from chance (1/C) to perfect: ``(BA - 1/C) / (1 - 1/C) <= CHANCE_MARGIN``.
CHANCE_MARGIN = 0.2
#: Differences of gains smaller than this (in the metric's units) count as "the same".
EQUIVALENCE_MARGIN = 0.02
#: Confidence level of every interval.
LEVEL = 0.95

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GainInterval:
    """A mean (paired) difference with its confidence interval.

    Attributes:
        estimate: the mean difference.
        low, high: the interval's ends (``nan`` when it cannot be computed, e.g. one seed).
        n: seeds (pairs) it rests on.
        seed_var: :math:`s_d^2 / n`, the seed part of the squared standard error.
        test_var: :math:`V_{test}`, the test-row bootstrap part.
        df: degrees of freedom of the t quantile (``nan`` without an interval).
    """

    estimate: float
    low: float
    high: float
    n: int
    seed_var: float
    test_var: float
    df: float

    @property
    def excludes_zero(self) -> bool:
        """Whether the whole interval lies on one side of 0."""
        return bool(self.low > 0 or self.high < 0)

    @property
    def half_width(self) -> float:
        """Half the interval's width (``nan`` without an interval)."""
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class HeterogeneityTest:
    """A permutation test that a quantity's mean is the same in every group.

    Attributes:
        statistic: the one-way ANOVA F of the observed grouping.
        p_value: ``(1 + #{F_perm >= F}) / (1 + n_perm)`` (exact enumeration: the share of
            all distinct groupings with ``F_perm >= F``).
        n_perm: groupings drawn (or enumerated).
        groups: number of groups.
    """

    statistic: float
    p_value: float
    n_perm: int
    groups: int


def _t_interval(estimate: float, seed_var: float, test_var: float, n: int) -> GainInterval:
    se2 = seed_var + test_var
    if n < 2 or not math.isfinite(se2):
        return GainInterval(estimate, math.nan, math.nan, n, seed_var, test_var, math.nan)
    if se2 <= 0:
        return GainInterval(estimate, estimate, estimate, n, seed_var, test_var, math.inf)
    df = (n - 1) * (se2 / seed_var) ** 2 if seed_var > 0 else math.inf
    q = float(stats.t.ppf(0.5 + LEVEL / 2, df)) if math.isfinite(df) else float(
        stats.norm.ppf(0.5 + LEVEL / 2)
    )
    half = q * math.sqrt(se2)
    return GainInterval(estimate, estimate - half, estimate + half, n, seed_var, test_var, df)


def gain_interval(diffs: Sequence[float] | Array, test_var: float = 0.0) -> GainInterval:
    r"""The 95 % interval of the mean of paired differences, seed and test-row noise together.

    .. math::
        \bar d \pm t_{0.975,\nu} \sqrt{s_d^2/n + V_{test}}, \quad
        \nu = (n-1)\,\big((s_d^2/n + V_{test}) / (s_d^2/n)\big)^2

    Args:
        diffs: one paired difference per seed.
        test_var: :math:`V_{test}`, the variance of the mean difference over test-row
            resamples (0: the paired t interval).

    Example:
        >>> g = gain_interval([0.10, 0.14, 0.12])
        >>> round(g.estimate, 3), round(g.low, 3), round(g.high, 3)
        (0.12, 0.07, 0.17)
    """
    d = np.asarray(diffs, dtype=np.float64)
    n = int(d.size)
    if n == 0:
        return GainInterval(math.nan, math.nan, math.nan, 0, math.nan, test_var, math.nan)
    seed_var = float(d.var(ddof=1) / n) if n > 1 else math.nan
    return _t_interval(float(d.mean()), seed_var, float(test_var), n)


def difference_interval(
    a: Sequence[float] | Array, b: Sequence[float] | Array, test_var: float = 0.0
) -> GainInterval:
    r"""The 95 % interval of :math:`\bar a - \bar b` for two independent groups of seeds.

    .. math::
        \mathrm{SE}^2 = s_a^2/n_a + s_b^2/n_b + V_{test}, \quad
        \nu = \mathrm{SE}^4 \Big/ \Big(\frac{(s_a^2/n_a)^2}{n_a - 1}
              + \frac{(s_b^2/n_b)^2}{n_b - 1}\Big)

    (Welch's interval, ``scipy.stats.ttest_ind(a, b, equal_var=False)``, when
    ``test_var`` is 0). ``n`` of the result is ``min(n_a, n_b)``.

    Example:
        >>> g = difference_interval([0.3, 0.32], [0.1, 0.12])
        >>> round(g.estimate, 3), g.excludes_zero
        (0.2, True)
    """
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = int(xa.size), int(xb.size)
    est = float(xa.mean() - xb.mean()) if na and nb else math.nan
    if na < 2 or nb < 2:
        return GainInterval(est, math.nan, math.nan, min(na, nb), math.nan, test_var, math.nan)
    va, vb = float(xa.var(ddof=1) / na), float(xb.var(ddof=1) / nb)
    se2 = va + vb + float(test_var)
    denom = va**2 / (na - 1) + vb**2 / (nb - 1)
    df = se2**2 / denom if denom > 0 else math.inf
    if se2 <= 0:
        return GainInterval(est, est, est, min(na, nb), va + vb, test_var, math.inf)
    q = float(stats.t.ppf(0.5 + LEVEL / 2, df)) if math.isfinite(df) else float(
        stats.norm.ppf(0.5 + LEVEL / 2)
    )
    half = q * math.sqrt(se2)
    return GainInterval(est, est - half, est + half, min(na, nb), va + vb, float(test_var), df)


def seeds_needed(
    seed_var_per_seed: float, test_var: float, difference: float, *, limit: int = 10_000
) -> int | None:
    r"""Seeds per group after which a difference of ``difference`` would be resolved.

    The smallest ``n >= 2`` with :math:`t_{0.975,n-1}\sqrt{v/n + V_{test}} < |D|`
    (``v`` the variance of one seed's contribution, :math:`V_{test}` fixed:
    more seeds do not shrink the test split's noise). ``None`` when no number of
    seeds up to ``limit`` suffices (the test split's noise alone is too large, or D is 0).

    Example:
        >>> seeds_needed(0.01, 0.0, 0.1), seeds_needed(0.01, 0.01, 0.1)
        (7, None)
    """
    d = abs(float(difference))
    if d == 0 or not math.isfinite(d) or not math.isfinite(seed_var_per_seed):
        return None
    z = float(stats.norm.ppf(0.5 + LEVEL / 2))
    if z * math.sqrt(max(test_var, 0.0)) >= d:
        return None
    n = 2
    while n <= limit:
        q = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1))
        if q * math.sqrt(seed_var_per_seed / n + test_var) < d:
            return n
        n = n + 1 if n < 64 else int(n * 1.1) + 1
    return None


def bootstrap_rows(n_rows: int, n_boot: int, seed: int = 0) -> npt.NDArray[np.int64]:
    """``n_boot`` resamples of ``range(n_rows)`` with replacement, shape ``(n_boot, n_rows)``.

    One matrix serves every trial of a study, so differences between trials are
    bootstrapped *paired* (the same test rows in every trial of a replicate).

    Example:
        >>> bootstrap_rows(4, 2, seed=1).shape
        (2, 4)
    """
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_rows, size=(n_boot, n_rows), dtype=np.int64)


def metric_from_predictions(
    pred: npt.NDArray[np.int64],
    y: npt.NDArray[np.int64],
    num_classes: int,
    metric: str,
    tail: Sequence[int] = (),
) -> Array:
    r"""A metric of predicted classes ``pred`` against labels ``y``, per leading row.

    ``pred`` and ``y`` have shape ``(..., N)``; the result has shape ``(...)``.
    With per-class recall :math:`r_c = TP_c / n_c` over the classes present:
    ``balanced_accuracy`` :math:`= \mathrm{mean}_c\, r_c`; ``macro_f1`` the mean
    of :math:`2TP_c / (2TP_c + FP_c + FN_c)` over the classes present or
    predicted; ``tail_recall`` the mean recall of the ``tail`` classes (absent
    ones count 0, as scikit-learn does); ``gmean`` :math:`(\prod_c r_c)^{1/C}`;
    ``accuracy`` the share right. They agree with scikit-learn's
    ``balanced_accuracy_score``, ``f1_score(average="macro")``,
    ``accuracy_score`` and imbalanced-learn's ``geometric_mean_score``.

    Example:
        >>> metric_from_predictions(np.array([0, 1, 1]), np.array([0, 1, 0]), 2,
        ...                         "balanced_accuracy").item()
        0.75
    """
    p = np.asarray(pred, dtype=np.int64)
    t = np.asarray(y, dtype=np.int64)
    p, t = np.broadcast_arrays(p, t)
    lead = p.shape[:-1]
    p2 = p.reshape(-1, p.shape[-1])
    t2 = t.reshape(-1, t.shape[-1])
    rows = p2.shape[0]
    c = int(num_classes)
    offset = (np.arange(rows)[:, None] * c * c)
    conf = np.bincount((offset + t2 * c + p2).ravel(), minlength=rows * c * c).reshape(rows, c, c)
    tp = np.diagonal(conf, axis1=1, axis2=2).astype(np.float64)
    support = conf.sum(2).astype(np.float64)
    predicted = conf.sum(1).astype(np.float64)
    present = support > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(present, tp / np.where(present, support, 1.0), 0.0)
    if metric == "accuracy":
        out = tp.sum(1) / p2.shape[1]
    elif metric == "balanced_accuracy":
        out = recall.sum(1) / np.maximum(present.sum(1), 1)
    elif metric == "macro_f1":
        denom = 2 * tp + (predicted - tp) + (support - tp)
        used = (support > 0) | (predicted > 0)
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1.0), 0.0)
        out = (f1 * used).sum(1) / np.maximum(used.sum(1), 1)
    elif metric == "tail_recall":
        idx = list(tail)
        if not idx:
            raise ValueError("tail_recall needs the tail classes")
        out = recall[:, idx].mean(1)
    elif metric == "gmean":
        with np.errstate(divide="ignore"):
            out = np.exp(np.log(recall).mean(1))
    else:
        raise ValueError(f"{metric!r} is not computed from predictions; see BOOTSTRAP_METRICS")
    return out.reshape(lead)  # type: ignore[no-any-return]


def _multisets(n: int) -> tuple[npt.NDArray[np.int64], Array]:
    """Every multiset of ``n`` draws from ``range(n)`` as counts, with its probability."""
    counts, probs = [], []
    log_total = n * math.log(n)
    for combo in itertools.combinations_with_replacement(range(n), n):
        cnt = np.bincount(combo, minlength=n)
        log_p = math.lgamma(n + 1) - sum(math.lgamma(k + 1) for k in cnt) - log_total
        counts.append(cnt)
        probs.append(math.exp(log_p))
    return np.asarray(counts, dtype=np.int64), np.asarray(probs)


def prob_best(
    values: Sequence[Sequence[float]] | Array,
    *,
    higher_is_better: bool = True,
    n_boot: int = 20_000,
    seed: int = 0,
) -> Array:
    r"""Probability that each entry (column) has the best mean over a bootstrap of the seeds (rows).

    ``values`` is ``(seeds, entries)``; a bootstrap replicate draws ``n`` seeds
    with replacement (the same draw for every entry: they are paired), and the
    entry with the best mean wins it (ties split evenly):
    :math:`P_k = \Pr^*[\bar v^*_k = \max_j \bar v^*_j]`. With up to 8 seeds every
    distinct replicate is enumerated with its multinomial probability (exact);
    above, ``n_boot`` replicates are drawn with ``seed``.

    Example:
        >>> prob_best([[0.8, 0.7], [0.6, 0.75]]).round(3).tolist()
        [0.25, 0.75]
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        return np.zeros(v.shape[1] if v.ndim == 2 else 0)
    n = v.shape[0]
    sign = 1.0 if higher_is_better else -1.0
    if n <= 8:
        counts, probs = _multisets(n)
    else:
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, n, size=(n_boot, n))
        counts = np.stack([np.bincount(d, minlength=n) for d in draws])
        probs = np.full(n_boot, 1.0 / n_boot)
    means = sign * (counts @ v) / n  # (replicates, entries)
    top = means.max(1, keepdims=True)
    win = np.isclose(means, top, rtol=0.0, atol=1e-12)
    share = win / win.sum(1, keepdims=True)
    return (probs[:, None] * share).sum(0)  # type: ignore[no-any-return]


def _f_stat(values: Array, labels: npt.NDArray[np.int64], k: int) -> Array:
    """One-way ANOVA F for each row of ``labels`` (permutations, ``(P, N)``) over ``values``."""
    n = values.shape[0]
    sums = np.zeros((labels.shape[0], k))
    np.add.at(sums, (np.arange(labels.shape[0])[:, None], labels), values[None, :])
    sizes = np.bincount(labels[0], minlength=k).astype(np.float64)
    grand = values.mean()
    between = ((sums**2) / sizes).sum(1) - n * grand**2
    within = (values**2).sum() - ((sums**2) / sizes).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (between / (k - 1)) / (within / (n - k))
    return np.where(within > 1e-15, f, np.where(between > 1e-15, np.inf, 0.0))


def heterogeneity_test(
    groups: Sequence[Sequence[float]], *, n_perm: int = 9999, seed: int = 0
) -> HeterogeneityTest:
    r"""Permutation test that every group has the same mean: one-way ANOVA F, labels permuted.

    .. math::
        F = \frac{\sum_g n_g (\bar x_g - \bar x)^2 / (G - 1)}
                 {\sum_g \sum_i (x_{gi} - \bar x_g)^2 / (N - G)}

    The observed ``F`` is compared with ``F`` of the values regrouped at random
    (group sizes kept): ``p = (1 + #{F* >= F}) / (1 + n_perm)``, or, when there
    are at most ``n_perm + 1`` distinct groupings, the exact share of all of them
    (the observed one included) with ``F* >= F``. Used on the
    paired gains of one weighting in several networks, it tests the weighting x
    network interaction. The statistic equals ``scipy.stats.f_oneway``'s.

    Example:
        >>> t = heterogeneity_test([[0.1, 0.12, 0.11], [0.3, 0.31, 0.32], [0.5, 0.52, 0.51]])
        >>> round(t.statistic, 1), t.n_perm, round(t.p_value, 4)  # 1680 groupings, 6 as extreme
        (1200.0, 1680, 0.0036)
    """
    gs = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
    k = len(gs)
    if k < 2:
        return HeterogeneityTest(math.nan, math.nan, 0, k)
    values = np.concatenate(gs)
    labels = np.concatenate([np.full(len(g), i) for i, g in enumerate(gs)])
    if values.size <= k:
        return HeterogeneityTest(math.nan, math.nan, 0, k)
    observed = float(_f_stat(values, labels[None, :], k)[0])
    sizes = [len(g) for g in gs]
    arrangements = math.factorial(values.size) // math.prod(math.factorial(s) for s in sizes)
    if arrangements <= n_perm + 1:  # every distinct grouping, the observed one included
        perms = np.asarray(list(_arrangements(sizes)), dtype=np.int64)
        f = _f_stat(values, perms, k)
        hits = int(np.sum(f >= observed * (1 - 1e-12)))
        return HeterogeneityTest(observed, hits / len(perms), len(perms), k)
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(labels) for _ in range(n_perm)])
    f = _f_stat(values, perms, k)
    hits = int(np.sum(f >= observed * (1 - 1e-12)))
    return HeterogeneityTest(observed, (1 + hits) / (1 + n_perm), n_perm, k)


def _arrangements(sizes: Sequence[int]) -> list[list[int]]:
    """Every distinct sequence holding ``sizes[g]`` copies of each label ``g``."""
    out: list[list[int]] = []
    left = list(sizes)
    seq: list[int] = []
    total = sum(sizes)

    def walk() -> None:
        if len(seq) == total:
            out.append(list(seq))
            return
        for g, n in enumerate(left):
            if n:
                left[g] -= 1
                seq.append(g)
                walk()
                seq.pop()
                left[g] += 1

    walk()
    return out


def holm(p_values: Sequence[float]) -> list[float]:
    r"""Holm's step-down adjusted p-values.

    .. math::
        \tilde p_{(i)} = \max_{j \le i} \min(1, (m - j + 1)\, p_{(j)})

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    p = list(p_values)
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = round(running, 15)
    return out


def normalized_chance(balanced_accuracy: float, num_classes: int) -> float:
    r"""How far a balanced accuracy is from chance towards perfect: :math:`(BA - 1/C) / (1 - 1/C)`.

    Example:
        >>> round(normalized_chance(0.28, 10), 3), normalized_chance(0.5, 2)
        (0.2, 0.0)
    """
    chance = 1.0 / num_classes
    return (balanced_accuracy - chance) / (1.0 - chance)


def is_near_chance(balanced_accuracy: float, num_classes: int) -> bool:
    """Whether a model is *undertrained*: ``normalized_chance(BA, C) <= CHANCE_MARGIN``.

    Example:
        >>> is_near_chance(0.25, 10), is_near_chance(0.56, 10)
        (True, False)
    """
    return normalized_chance(balanced_accuracy, num_classes) <= CHANCE_MARGIN
