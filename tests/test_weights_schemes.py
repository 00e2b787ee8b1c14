"""Weight schemes, class_weights and pos_weight: references, identities, sklearn parity, errors."""

from __future__ import annotations

import inspect
import math
import re
import statistics
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.utils.class_weight import compute_class_weight

from weightlab.errors import (
    InvalidDtypeError,
    InvalidValueError,
    InvalidWeightError,
    ShapeMismatchError,
    UnknownNameError,
    ZeroCountError,
)
from weightlab.weights import (
    NORMALIZATIONS,
    SCHEMES,
    ZERO_COUNT_POLICIES,
    class_weights,
    count_labels,
    count_multilabel,
    list_schemes,
    pos_weight,
    scheme_defaults,
)


def exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


# Independent references: plain Python, one class at a time, straight from the papers.
def _reference(name: str, n: list[int], **p: float) -> list[float]:
    total, num = sum(n), len(n)
    if name == "inverse":
        return [1 / x for x in n]
    if name == "balanced":
        return [total / (num * x) for x in n]
    if name == "sqrt_inverse":
        return [1 / math.sqrt(x) for x in n]
    if name == "power":
        return [x ** -p.get("alpha", 0.5) for x in n]
    if name == "effective_number":
        beta = p.get("beta", 0.999)
        return [(1 - beta) / (1 - beta**x) for x in n]
    if name == "median_frequency":
        freq = [x / total for x in n]
        return [statistics.median(freq) / f for f in freq]
    if name == "log":
        c = p.get("c", 1.02)
        return [1 / math.log(c + x / total) for x in n]
    if name == "uniform":
        return [1.0] * num
    raise AssertionError(f"no reference for scheme {name!r}: add one")


ALL = [
    "inverse",
    "balanced",
    "sqrt_inverse",
    "power",
    "effective_number",
    "median_frequency",
    "log",
    "uniform",
]
positive_counts = st.lists(st.integers(1, 10_000), min_size=1, max_size=12)


def test_registry_lists_every_scheme_once_in_order() -> None:
    assert list_schemes() == ALL == SCHEMES.names()


@pytest.mark.parametrize("name", ALL)
def test_every_scheme_documents_formula_and_example(name: str) -> None:
    fn = SCHEMES.get(name)
    doc = inspect.getdoc(fn) or ""
    assert ".. math::" in doc
    assert "Example:" in doc
    params = inspect.signature(fn).parameters.values()
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(params)[1:])


@pytest.mark.parametrize("name", ALL)
@given(n=positive_counts)
@settings(max_examples=40, deadline=None)
def test_scheme_matches_reference(name: str, n: list[int]) -> None:
    got = class_weights(n, name, normalize="none")
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, _reference(name, n), rtol=1e-12)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("power", {"alpha": 0.0}),
        ("power", {"alpha": 2.0}),
        ("effective_number", {"beta": 0.9}),
        ("effective_number", {"beta": 0.0}),
        ("log", {"c": 1.5}),
    ],
)
def test_scheme_parameters_match_reference(name: str, params: dict[str, float]) -> None:
    n = [5000, 800, 120, 9, 1]
    got = class_weights(n, name, normalize="none", **params)
    np.testing.assert_allclose(got, _reference(name, n, **params), rtol=1e-12)


@pytest.mark.parametrize("name", ALL)
@given(n=positive_counts)
@settings(max_examples=25, deadline=None)
def test_rarer_classes_never_weigh_less(name: str, n: list[int]) -> None:
    order = np.argsort(n, kind="stable")[::-1]  # most frequent first
    w = class_weights(n, name)[order]
    assert np.all(np.diff(w) >= -1e-12 * w.max())
    assert np.isfinite(w).all() and (w > 0).all()


@given(st.lists(st.integers(0, 25), min_size=1, max_size=300))
@settings(max_examples=100, deadline=None)
def test_balanced_equals_sklearn_exactly(values: list[int]) -> None:
    _, y = np.unique(values, return_inverse=True)  # every class present, as sklearn needs
    classes = np.arange(y.max() + 1)
    ours = class_weights(count_labels(y), "balanced", normalize="none")
    theirs = compute_class_weight("balanced", classes=classes, y=y)
    assert np.array_equal(ours, theirs)


def test_identities_between_schemes() -> None:
    n = np.array([640, 160, 40, 10])
    same = np.testing.assert_allclose
    same(class_weights(n, "power", alpha=1.0), class_weights(n, "inverse"), rtol=1e-12)
    same(class_weights(n, "power", alpha=0.5), class_weights(n, "sqrt_inverse"), rtol=1e-12)
    same(class_weights(n, "power", alpha=0.0), class_weights(n, "uniform"), rtol=1e-12)
    same(class_weights(n, "balanced"), class_weights(n, "inverse"), rtol=1e-12)
    same(class_weights(n, "effective_number", beta=0.0), np.ones(4), rtol=1e-12)
    # beta -> 1: the effective number tends to n, the weights to inverse frequency
    near = class_weights(n, "effective_number", beta=1 - 1e-9)
    same(near, class_weights(n, "inverse"), rtol=1e-5)


def test_balanced_scale_and_median_and_log_bounds() -> None:
    n = np.array([600.0, 250.0, 100.0, 40.0, 10.0])
    w = class_weights(n, "balanced", normalize="none")
    assert math.isclose(float((n * w).sum()), n.sum())  # average sample weight 1
    assert class_weights(n, "median_frequency", normalize="none")[2] == 1.0  # the median class
    w = class_weights(np.array([1e9, 1.0]), "log", normalize="none")
    assert 1 / math.log(2.02) <= w.min() and w.max() <= 1 / math.log(1.02)


def test_median_frequency_ignores_empty_classes() -> None:
    w = class_weights([60, 0, 30, 10], "median_frequency", normalize="none", zero_count="zero")
    np.testing.assert_allclose(w, [0.5, 0.0, 1.0, 3.0])


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("name", ALL)
def test_normalisations(name: str) -> None:
    n = [900, 300, 50, 7]
    raw = class_weights(n, name, normalize="none")
    mean = class_weights(n, name)  # the default
    assert math.isclose(mean.mean(), 1.0) and math.isclose(mean.sum(), len(n))
    np.testing.assert_allclose(mean, raw / raw.mean(), rtol=1e-12)
    np.testing.assert_allclose(class_weights(n, name, normalize="max"), raw / raw.max(), rtol=1e-12)
    np.testing.assert_allclose(class_weights(n, name, normalize="min"), raw / raw.min(), rtol=1e-12)
    assert NORMALIZATIONS == ("mean", "max", "min", "none")


def test_normalisation_with_zero_weight_classes() -> None:
    w = class_weights([100, 0, 10], "inverse", zero_count="zero", normalize="min")
    np.testing.assert_allclose(w, [1.0, 0.0, 10.0])
    w = class_weights([100, 0, 10], "inverse", zero_count="zero")
    assert math.isclose(w.sum(), 3.0) and w[1] == 0.0


# --------------------------------------------------------------------------- clip, zero counts


def test_clip_caps_the_ratio_before_normalising() -> None:
    n = [10_000, 1000, 100, 10]
    w = class_weights(n, "inverse", clip=10, normalize="none")
    np.testing.assert_allclose(w, [1e-4, 1e-3, 1e-3, 1e-3])
    for normalize in NORMALIZATIONS:
        w = class_weights(n, "inverse", clip=10, normalize=normalize)  # type: ignore[arg-type]
        assert math.isclose(w.max() / w.min(), 10.0)
    unclipped = class_weights(n, "sqrt_inverse")
    np.testing.assert_array_equal(class_weights(n, "sqrt_inverse", clip=1000), unclipped)
    np.testing.assert_allclose(class_weights(n, "inverse", clip=1), np.ones(4))


def test_zero_count_policies() -> None:
    n = [1000, 0, 100, 10]
    np.testing.assert_allclose(
        class_weights(n, "inverse", zero_count="zero", normalize="none"), [1e-3, 0, 1e-2, 1e-1]
    )
    np.testing.assert_allclose(
        class_weights(n, "inverse", zero_count="max", normalize="none"), [1e-3, 1e-1, 1e-2, 1e-1]
    )
    # "max" is the largest weight after clipping
    np.testing.assert_allclose(
        class_weights(n, "inverse", zero_count="max", clip=2, normalize="min"), [1, 2, 2, 2]
    )
    # the policy applies to every scheme, also to those finite at n = 0
    assert class_weights(n, "uniform", zero_count="zero", normalize="none").tolist() == [1, 0, 1, 1]
    assert ZERO_COUNT_POLICIES == ("raise", "zero", "max")


def test_tensor_and_float_counts() -> None:
    w = class_weights(torch.tensor([30, 10]), normalize="none")
    assert isinstance(w, np.ndarray) and w.dtype == np.float64
    np.testing.assert_allclose(w, [2 / 3, 2.0])
    np.testing.assert_allclose(
        class_weights(np.array([2.5, 7.5]), "inverse", normalize="max"), [1, 1 / 3]
    )


def test_scheme_defaults() -> None:
    assert {name: scheme_defaults(name) for name in ALL if scheme_defaults(name)} == {
        "power": {"alpha": 0.5},
        "effective_number": {"beta": 0.999},
        "log": {"c": 1.02},
    }


# --------------------------------------------------------------------------- pos_weight


def test_pos_weight_is_negatives_over_positives() -> None:
    assert pos_weight([100], [300]).tolist() == [3.0]  # PyTorch's BCEWithLogitsLoss example
    y = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    counts = count_multilabel(y)
    expected = [1 / 3, 3.0, 3.0]
    np.testing.assert_allclose(pos_weight(counts), expected)
    np.testing.assert_allclose(pos_weight(counts.positives, counts.negatives), expected)
    np.testing.assert_allclose(pos_weight(counts.positives, n_samples=4), expected)
    np.testing.assert_allclose(pos_weight(torch.tensor([1, 3]), torch.tensor([3, 1])), [3, 1 / 3])
    assert pos_weight([2], n_samples=np.int64(2)).tolist() == [0.0]
    # positives and negatives of every label then carry the same total weight
    w = torch.as_tensor(pos_weight(counts))
    assert torch.allclose(
        torch.from_numpy(counts.positives) * w, torch.from_numpy(counts.negatives).double()
    )


def test_pos_weight_zero_positives() -> None:
    assert pos_weight([0, 10, 1], [5, 10, 9], zero_count="zero").tolist() == [0.0, 1.0, 9.0]
    assert pos_weight([0, 10, 1], [5, 10, 9], zero_count="max").tolist() == [9.0, 1.0, 9.0]
    msg = (
        "Expected `positives` to be > 0 for every label, but got 0 for labels [0]. Drop the "
        "labels without positives, or pass zero_count='zero' (weight 0) or zero_count='max' "
        "(the largest weight)."
    )
    with pytest.raises(ZeroCountError, match=exact(msg)):
        pos_weight([0, 10], [5, 10])


def test_pos_weight_bad_arguments() -> None:
    msg = (
        "Expected `negatives` or `n_samples` to be given (exactly one of them), but got {}. Pass "
        "negatives per label, or the number of samples n_samples."
    )
    with pytest.raises(InvalidValueError, match=exact(msg.format("neither"))):
        pos_weight([1, 2])
    with pytest.raises(InvalidValueError, match=exact(msg.format("both"))):
        pos_weight([1, 2], [3, 4], n_samples=5)
    with pytest.raises(
        InvalidValueError,
        match=exact(
            "Expected `n_samples` to be an integer >= the largest positive count (5), but got 4. "
            "Pass the number of samples the positives were counted over."
        ),
    ):
        pos_weight([1, 5], n_samples=4)
    with pytest.raises(
        ShapeMismatchError,
        match=exact(
            "Expected `negatives` to have the shape of `positives` (2,), but got shape (3,). Pass "
            "one count per label in both."
        ),
    ):
        pos_weight([1, 2], [1, 2, 3])
    with pytest.raises(
        InvalidValueError,
        match=exact(
            "Expected `positives` to be a MultilabelCounts alone, or positives per label with "
            "`negatives` or `n_samples`, but got a MultilabelCounts and more counts. Pass the "
            "MultilabelCounts alone: pos_weight(count_multilabel(y))."
        ),
    ):
        pos_weight(count_multilabel([[1, 0]]), n_samples=1)
    with pytest.raises(InvalidValueError, match=re.escape("Expected `negatives` to be >= 0")):
        pos_weight([1, 2], [3, -4])


# --------------------------------------------------------------------------- errors


def test_unknown_scheme() -> None:
    # The fix sentence comes from weightlab.registry; the rest is checked exactly.
    msg = (
        "Expected `scheme` to be one of 'inverse', 'balanced', 'sqrt_inverse', 'power', "
        "'effective_number', 'median_frequency', 'log', 'uniform', but got 'focal'. "
    )
    with pytest.raises(UnknownNameError, match="^" + re.escape(msg)):
        class_weights([1, 2], "focal")


def test_unknown_scheme_parameter() -> None:
    msg = (
        "Expected `scheme_params` to be parameters of scheme {}, but got {}. Remove them, or pick "
        "a scheme that takes them."
    )
    with pytest.raises(
        UnknownNameError, match=exact(msg.format("'inverse' (it takes none)", "'alpha'"))
    ):
        class_weights([1, 2], "inverse", alpha=0.5)
    with pytest.raises(
        UnknownNameError, match=exact(msg.format("'power' ('alpha')", "'beta', 'gamma'"))
    ):
        class_weights([1, 2], "power", gamma=1.0, beta=0.9)


COUNTS_FIX = "Pass one count per class, e.g. the output of count_labels(y)."
NEGATIVE = (
    "Expected `counts` to be >= 0, but got {} at index 1. Counts are numbers of samples; "
    + ("check how they were computed.")
)
NOT_FINITE = "Expected `counts` to be finite, but got {}. Replace nan or infinite counts; " + (
    "count_labels() never returns them."
)
ZERO = "Expected `counts` to be > 0 for every class, but got 0 for classes {}. Drop the empty " + (
    "classes, or pass zero_count='zero' (weight 0) or zero_count='max' (the largest weight)."
)
SHAPE = "Expected `counts` to be 1-D with one count per class, but got shape {}. " + COUNTS_FIX


@pytest.mark.parametrize(
    ("counts", "error", "message"),
    [
        ([1, -2], InvalidValueError, NEGATIVE.format("-2")),
        ([1.0, -0.5], InvalidValueError, NEGATIVE.format("-0.5")),
        ([1, float("nan")], InvalidValueError, NOT_FINITE.format("nan at index 1")),
        (torch.tensor([float("inf"), 1.0]), InvalidValueError, NOT_FINITE.format("inf at index 0")),
        ([[1, 2]], ShapeMismatchError, SHAPE.format("(1, 2)")),
        ([], ShapeMismatchError, SHAPE.format("(0,)")),
        (
            ["1", "2"],
            InvalidDtypeError,
            "Expected `counts` to hold numbers, but got dtype <U1. " + COUNTS_FIX,
        ),
        ([0, 5, 0], ZeroCountError, ZERO.format("[0, 2]")),
        ([0] * 12 + [1], ZeroCountError, ZERO.format("[0, 1, 2, 3, 4, 5, 6, 7, 8, 9] and 2 more")),
    ],
)
def test_bad_counts(counts: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=exact(message)):
        class_weights(counts)


def test_all_counts_zero_raises_under_every_policy() -> None:
    msg = (
        "Expected `counts` to have at least one class with samples, but got 0 for every class. "
        "Count the labels of a non-empty data set."
    )
    for policy in ZERO_COUNT_POLICIES:
        with pytest.raises(ZeroCountError, match=exact(msg)):
            class_weights([0, 0], zero_count=policy)  # type: ignore[arg-type]


@pytest.mark.parametrize("beta", [1.0, -0.1, 1.5, float("nan"), "0.9", True])
def test_bad_beta(beta: object) -> None:
    msg = (
        f"Expected `beta` to be a number in [0, 1), but got {beta!r}. Use e.g. beta=0.999 (Cui et "
        "al. 2019); values closer to 1 weight rare classes more."
    )
    with pytest.raises(InvalidValueError, match=exact(msg)):
        class_weights([1, 2], "effective_number", beta=beta)  # type: ignore[arg-type]


@pytest.mark.parametrize("alpha", [-0.5, float("inf"), None])
def test_bad_alpha(alpha: object) -> None:
    msg = (
        f"Expected `alpha` to be a finite number >= 0, but got {alpha!r}. Use alpha=0 for uniform, "
        "0.5 for square-root inverse, 1 for inverse frequency."
    )
    with pytest.raises(InvalidValueError, match=exact(msg)):
        class_weights([1, 2], "power", alpha=alpha)  # type: ignore[arg-type]


@pytest.mark.parametrize("c", [1.0, 0.5, float("nan")])
def test_bad_log_offset(c: float) -> None:
    msg = (
        f"Expected `c` to be a finite number > 1, but got {c!r}. Use c=1.02 (Paszke et al. 2016); "
        "larger c gives flatter weights."
    )
    with pytest.raises(InvalidValueError, match=exact(msg)):
        class_weights([1, 2], "log", c=c)


@pytest.mark.parametrize(
    ("value", "fix"),
    [
        ("sum", "'sum' (weights sum to C) is the same as 'mean' (weights average 1): use 'mean'."),
        ("l1", "Pick one of those."),
        (None, "Pick one of those."),
    ],
)
def test_bad_normalize(value: object, fix: str) -> None:
    msg = (
        f"Expected `normalize` to be one of 'mean', 'max', 'min', 'none', but got {value!r}. {fix}"
    )
    with pytest.raises(UnknownNameError, match=exact(msg)):
        class_weights([1, 2], normalize=value)  # type: ignore[arg-type]


def test_bad_zero_count() -> None:
    msg = (
        "Expected `zero_count` to be one of 'raise', 'zero', 'max', but got 'ignore'. Pick one of "
        "those; 'raise' is the default."
    )
    with pytest.raises(UnknownNameError, match=exact(msg)):
        class_weights([1, 2], zero_count="ignore")  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError, match=exact(msg)):
        pos_weight([1, 2], [1, 2], zero_count="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize("clip", [0.5, 0, -3, float("inf"), float("nan"), "10", True])
def test_bad_clip(clip: object) -> None:
    msg = (
        "Expected `clip` to be None or a finite number >= 1 (the largest allowed max(w) / min(w)), "
        f"but got {clip!r}. Use e.g. clip=10, or None for no clipping."
    )
    with pytest.raises(InvalidValueError, match=exact(msg)):
        class_weights([1, 2], clip=clip)  # type: ignore[arg-type]


def test_a_broken_custom_scheme_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(counts: np.ndarray) -> np.ndarray:
        return -counts

    scheme: Callable[..., np.ndarray] = broken
    monkeypatch.setitem(SCHEMES._items, "broken", scheme)
    msg = (
        "Expected `scheme` to give a finite weight > 0 to every class with samples, but got "
        "array([-1., -2.]) from scheme 'broken'. Fix the scheme function registered under that "
        "name."
    )
    with pytest.raises(InvalidWeightError, match=exact(msg)):
        class_weights([1, 2], "broken")
