"""From counts to weights: apply a scheme, then the zero-count policy, clipping, normalisation.

:func:`class_weights` turns per-class counts into per-class weights (for
``CrossEntropyLoss(weight=...)``); :func:`pos_weight` turns per-label positive
and negative counts into the ``pos_weight`` of ``BCEWithLogitsLoss``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from weightlab.errors import (
    InvalidDtypeError,
    InvalidValueError,
    InvalidWeightError,
    ShapeMismatchError,
    UnknownNameError,
    ZeroCountError,
    expected,
    names,
)
from weightlab.weights._arrays import as_numpy
from weightlab.weights.counting import MultilabelCounts
from weightlab.weights.schemes import SCHEMES, scheme_defaults

__all__ = [
    "NORMALIZATIONS",
    "ZERO_COUNT_POLICIES",
    "Normalize",
    "ZeroCount",
    "class_weights",
    "pos_weight",
]

FloatArray = npt.NDArray[np.float64]
Normalize = Literal["mean", "max", "min", "none"]
ZeroCount = Literal["raise", "zero", "max"]

#: The values of ``normalize``: one name per distinct rescaling.
NORMALIZATIONS: tuple[str, ...] = ("mean", "max", "min", "none")
#: The values of ``zero_count``: what a class (or label) with no samples gets.
ZERO_COUNT_POLICIES: tuple[str, ...] = ("raise", "zero", "max")

_NORMALIZE_FIXES = {
    "sum": "'sum' (weights sum to C) is the same as 'mean' (weights average 1): use 'mean'.",
}


def class_weights(
    counts: object,
    scheme: str = "balanced",
    *,
    normalize: Normalize = "mean",
    clip: float | None = None,
    zero_count: ZeroCount = "raise",
    **scheme_params: float,
) -> FloatArray:
    r"""Per-class weights from per-class counts, by a named scheme.

    .. math:: w = \operatorname{normalize}(\operatorname{clip}(\operatorname{scheme}(n)))

    The steps, in order:

    1. **scheme**: raw weights ``w_c`` from the counts ``n_c``, see
       :func:`~weightlab.weights.list_schemes` and the formula in each scheme's
       docstring (``"balanced"``: :math:`N / (C \, n_c)`, scikit-learn's).
    2. **clip**: caps the weights of the classes with samples at ``clip`` times
       the smallest of them,
       :math:`w_c \leftarrow \min(w_c, \text{clip} \cdot \min_k w_k)`, so that
       ``max(w) / min(w) <= clip``.
    3. **zero counts** (``zero_count``): classes with :math:`n_c = 0`, whatever
       the scheme gives them (``inf`` for most), either raise
       :class:`~weightlab.errors.ZeroCountError` (``"raise"``, the default),
       get weight 0 (``"zero"``: the class never contributes) or get the
       largest weight of the classes with samples, after clipping (``"max"``).
    4. **normalize**: ``"mean"`` (default) rescales so the weights average 1
       over the ``C`` classes, i.e. sum to ``C`` (the normalisation of Cui et
       al. 2019; weights of different schemes are then comparable);
       ``"max"`` so the largest weight is 1; ``"min"`` so the smallest positive
       weight is 1; ``"none"`` keeps the scheme's own scale.
       ``class_weights(counts, "balanced", normalize="none")`` equals
       ``sklearn.utils.class_weight.compute_class_weight("balanced", ...)``
       exactly; its scale makes the weighted number of samples
       :math:`\sum_c n_c w_c` equal ``N``.

    The scale matters for ``reduction="sum"`` and for losses that are not a
    weighted mean; ``CrossEntropyLoss(weight=w)`` with ``reduction="mean"``
    divides by the summed weights and does not depend on it.

    Args:
        counts: samples per class, shape ``(C,)``: a numpy array, a list, or a
            torch tensor (the output of :func:`~weightlab.weights.count_labels`).
            Non-negative and finite; need not be integers.
        scheme: the name of a scheme in :data:`~weightlab.weights.SCHEMES`.
            Default ``"balanced"``.
        normalize: ``"mean"``, ``"max"``, ``"min"`` or ``"none"``. Default
            ``"mean"``.
        clip: the largest allowed ratio ``max(w) / min(w)``, a number >= 1, or
            ``None`` (default) for no clipping.
        zero_count: ``"raise"``, ``"zero"`` or ``"max"``. Default ``"raise"``.
        **scheme_params: the scheme's keyword parameters (``alpha`` for
            ``"power"``, ``beta`` for ``"effective_number"``, ``c`` for
            ``"log"``).

    Returns:
        float64 numpy array of shape ``(C,)``, also for tensor counts; make it
        a tensor with ``torch.as_tensor(w, dtype=torch.float32)``.

    Raises:
        UnknownNameError: for an unknown ``scheme``, ``normalize`` or
            ``zero_count``, or a parameter the scheme does not take.
        InvalidValueError: if counts are negative, ``nan`` or infinite, if
            ``clip`` is below 1, or a scheme parameter is out of range.
        ZeroCountError: if a class has count 0 and ``zero_count="raise"``, or
            every class has count 0.
        ShapeMismatchError: if ``counts`` is not 1-D with at least one class.
        InvalidWeightError: if a scheme (a custom one: the built-in schemes
            never do) gives a class with samples a weight that is not finite
            and positive.

    Example:
        >>> class_weights([30, 10], normalize="none")  # sklearn's "balanced"
        array([0.66666667, 2.        ])
        >>> class_weights([30, 10])  # mean 1
        array([0.5, 1.5])
        >>> class_weights([900, 90, 10], "inverse", clip=10, normalize="min")
        array([ 1., 10., 10.])
        >>> class_weights([100, 0, 10], "inverse", zero_count="zero", normalize="none")
        array([0.01, 0.  , 0.1 ])
        >>> class_weights([100, 10], "effective_number", beta=0.99)
        array([0.2..., 1.7...])
    """
    n = _counts(counts, "counts")
    fn = SCHEMES.get(scheme)
    _check_choice(
        "normalize",
        normalize,
        NORMALIZATIONS,
        _NORMALIZE_FIXES.get(str(normalize), "Pick one of those."),
    )
    _check_choice(
        "zero_count", zero_count, ZERO_COUNT_POLICIES, "Pick one of those; 'raise' is the default."
    )
    _check_clip(clip)
    accepted = scheme_defaults(scheme)
    unknown = sorted(set(scheme_params) - set(accepted))
    if unknown:
        takes = f"({names(accepted)})" if accepted else "(it takes none)"
        raise UnknownNameError(
            expected(
                "scheme_params",
                f"to be parameters of scheme {scheme!r} {takes}",
                names(unknown),
                "Remove them, or pick a scheme that takes them.",
            )
        )

    empty = n == 0
    present = ~empty
    if not present.any():
        raise ZeroCountError(
            expected(
                "counts",
                "to have at least one class with samples",
                "0 for every class",
                "Count the labels of a non-empty data set.",
            )
        )
    raw = np.asarray(fn(n, **scheme_params), dtype=np.float64)
    if raw.shape != n.shape or not (np.isfinite(raw[present]).all() and (raw[present] > 0).all()):
        raise InvalidWeightError(
            expected(
                "scheme",
                "to give a finite weight > 0 to every class with samples",
                f"{raw!r} from scheme {scheme!r}",
                "Fix the scheme function registered under that name.",
            )
        )
    if empty.any() and zero_count == "raise":
        raise ZeroCountError(
            expected(
                "counts",
                "to be > 0 for every class",
                f"0 for {_class_list(np.flatnonzero(empty))}",
                "Drop the empty classes, or pass zero_count='zero' (weight 0) or "
                "zero_count='max' (the largest weight).",
            )
        )
    weights = np.zeros_like(n)
    kept = raw[present]
    if clip is not None:
        kept = np.minimum(kept, float(clip) * kept.min())
    weights[present] = kept
    if zero_count == "max":
        weights[empty] = kept.max()
    return _normalized(weights, normalize)


def pos_weight(
    positives: object,
    negatives: object = None,
    *,
    n_samples: int | None = None,
    zero_count: ZeroCount = "raise",
) -> FloatArray:
    r"""Per-label positive weight for multi-label BCE: negatives over positives.

    .. math:: p_l = \frac{n^-_l}{n^+_l} = \frac{N - n^+_l}{n^+_l}

    This is the ``pos_weight`` of ``torch.nn.BCEWithLogitsLoss``: a positive of
    label ``l`` weighs :math:`p_l`, a negative 1, so both sides of every label
    carry the same total weight (the PyTorch documentation's example: 100
    positives and 300 negatives give ``pos_weight = 3``).

    Args:
        positives: positives per label, shape ``(L,)``, or a
            :class:`~weightlab.weights.MultilabelCounts` (then leave out the
            other counts).
        negatives: negatives per label, shape ``(L,)``. Give this or
            ``n_samples``.
        n_samples: the number of samples ``N``; negatives are ``N - positives``.
        zero_count: labels with no positives: ``"raise"`` (default),
            ``"zero"`` (weight 0) or ``"max"`` (the largest weight of the other
            labels).

    Returns:
        float64 numpy array of shape ``(L,)``.

    Raises:
        InvalidValueError: if counts are negative or not finite, if neither or
            both of ``negatives`` and ``n_samples`` are given, or if
            ``n_samples`` is smaller than a positive count.
        ShapeMismatchError: if ``positives`` and ``negatives`` differ in shape.
        ZeroCountError: if a label has no positives and ``zero_count="raise"``.

    Example:
        >>> pos_weight([100, 10], [300, 390])
        array([ 3., 39.])
        >>> pos_weight([100, 10], n_samples=400)
        array([ 3., 39.])
        >>> from weightlab.weights import count_multilabel
        >>> pos_weight(count_multilabel([[1, 0], [1, 1], [0, 0], [0, 0]]))
        array([1., 3.])
    """
    if isinstance(positives, MultilabelCounts):
        if negatives is not None or n_samples is not None:
            raise InvalidValueError(
                expected(
                    "positives",
                    "to be a MultilabelCounts alone, or positives per label with `negatives` "
                    "or `n_samples`",
                    "a MultilabelCounts and more counts",
                    "Pass the MultilabelCounts alone: pos_weight(count_multilabel(y)).",
                )
            )
        pos = positives.positives.astype(np.float64)
        neg = positives.negatives.astype(np.float64)
    else:
        pos = _counts(positives, "positives")
        if (negatives is None) == (n_samples is None):
            raise InvalidValueError(
                expected(
                    "negatives",
                    "or `n_samples` to be given (exactly one of them)",
                    "both" if negatives is not None else "neither",
                    "Pass negatives per label, or the number of samples n_samples.",
                )
            )
        if negatives is not None:
            neg = _counts(negatives, "negatives")
            if neg.shape != pos.shape:
                raise ShapeMismatchError(
                    expected(
                        "negatives",
                        f"to have the shape of `positives` {pos.shape}",
                        f"shape {neg.shape}",
                        "Pass one count per label in both.",
                    )
                )
        else:
            if (
                not isinstance(n_samples, (int, np.integer))
                or isinstance(n_samples, bool)
                or n_samples < pos.max()
            ):
                raise InvalidValueError(
                    expected(
                        "n_samples",
                        f"to be an integer >= the largest positive count ({pos.max():g})",
                        repr(n_samples),
                        "Pass the number of samples the positives were counted over.",
                    )
                )
            neg = float(n_samples) - pos
    _check_choice(
        "zero_count", zero_count, ZERO_COUNT_POLICIES, "Pick one of those; 'raise' is the default."
    )
    empty = pos == 0
    if empty.any() and zero_count == "raise":
        raise ZeroCountError(
            expected(
                "positives",
                "to be > 0 for every label",
                f"0 for {_class_list(np.flatnonzero(empty), 'labels')}",
                "Drop the labels without positives, or pass zero_count='zero' (weight 0) or "
                "zero_count='max' (the largest weight).",
            )
        )
    weights = np.zeros_like(pos)
    weights[~empty] = neg[~empty] / pos[~empty]
    if zero_count == "max" and empty.any():
        weights[empty] = weights[~empty].max() if (~empty).any() else 0.0
    return weights


# --------------------------------------------------------------------------- internals


def _counts(counts: object, argument: str) -> FloatArray:
    """Validate counts: 1-D, non-empty, numbers, finite, >= 0; return float64."""
    array: np.ndarray[Any, Any] = as_numpy(counts)
    fix = "Pass one count per class, e.g. the output of count_labels(y)."
    if array.ndim != 1 or array.size == 0:
        raise ShapeMismatchError(
            expected(argument, "to be 1-D with one count per class", f"shape {array.shape}", fix)
        )
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise InvalidDtypeError(expected(argument, "to hold numbers", f"dtype {array.dtype}", fix))
    n = array.astype(np.float64)
    bad = ~np.isfinite(n)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidValueError(
            expected(
                argument,
                "to be finite",
                f"{n[i]} at index {i}",
                "Replace nan or infinite counts; count_labels() never returns them.",
            )
        )
    if (n < 0).any():
        i = int(np.argmax(n < 0))
        raise InvalidValueError(
            expected(
                argument,
                "to be >= 0",
                f"{array[i].item()!r} at index {i}",
                "Counts are numbers of samples; check how they were computed.",
            )
        )
    return n


def _check_choice(argument: str, value: object, choices: tuple[str, ...], fix: str) -> None:
    if value not in choices:
        raise UnknownNameError(
            expected(
                argument,
                f"to be one of {names(choices)}",
                repr(value),
                fix,
            )
        )


def _check_clip(clip: object) -> None:
    if clip is None:
        return
    if (
        isinstance(clip, (int, float, np.integer, np.floating))
        and not isinstance(clip, bool)
        and np.isfinite(clip)
        and clip >= 1
    ):
        return
    raise InvalidValueError(
        expected(
            "clip",
            "to be None or a finite number >= 1 (the largest allowed max(w) / min(w))",
            repr(clip),
            "Use e.g. clip=10, or None for no clipping.",
        )
    )


def _class_list(indices: np.ndarray[Any, Any], what: str = "classes") -> str:
    shown = [int(i) for i in indices[:10]]
    more = f" and {indices.size - 10} more" if indices.size > 10 else ""
    return f"{what} {shown}{more}"


def _normalized(weights: FloatArray, normalize: str) -> FloatArray:
    if normalize == "none":
        return weights
    if normalize == "mean":
        scale = weights.size / float(weights.sum())
    elif normalize == "max":
        scale = 1.0 / float(weights.max())
    else:  # "min"
        scale = 1.0 / float(weights[weights > 0].min())
    return weights * scale
