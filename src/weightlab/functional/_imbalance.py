r"""Stages shared by the imbalance-aware losses: class counts, priors and scalar checks.

Losses whose formula needs class frequencies (balanced softmax, logit
adjustment, LDAM, class-balanced weights) take per-class counts ``n_c`` (or
priors ``pi_c``) through :func:`prepare_counts` / :func:`prepare_prior`, which
refuse a missing vector, a wrong length, negative, NaN or infinite entries, and
zero counts (``log 0`` and ``1 / 0`` have no finite value).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from weightlab.errors import (
    InvalidValueError,
    InvalidWeightError,
    ZeroCountError,
    expected,
)
from weightlab.functional._validation import WeightLike, as_weight, shape_str

__all__ = [
    "check_finite_number",
    "check_nonnegative",
    "check_positive",
    "effective_number_weights",
    "log_prior",
    "prepare_counts",
    "prepare_prior",
]


def check_finite_number(name: str, value: float, what: str) -> None:
    """Refuse a scalar argument that is not a finite real number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValueError(
            expected(name, f"to be a finite number ({what})", repr(value), "Pass a float.")
        )


def check_nonnegative(name: str, value: float, what: str, fix: str) -> None:
    """Refuse a scalar argument that is not a finite number >= 0."""
    check_finite_number(name, value, what)
    if value < 0:
        raise InvalidValueError(expected(name, f"to be >= 0 ({what})", repr(value), fix))


def check_positive(name: str, value: float, what: str, fix: str) -> None:
    """Refuse a scalar argument that is not a finite number > 0."""
    check_finite_number(name, value, what)
    if value <= 0:
        raise InvalidValueError(expected(name, f"to be > 0 ({what})", repr(value), fix))


def prepare_counts(
    counts: WeightLike | None,
    num_classes: int | None,
    *,
    device: torch.device | None = None,
    name: str = "counts",
    validate_args: bool = True,
) -> Tensor:
    """Return per-class counts as a float64 tensor, refusing missing, bad or zero counts.

    Args:
        counts: number of training samples of each class, shape ``(C,)``.
        num_classes: ``C`` the counts must match, or ``None`` to accept any length.
        device: where the tensor goes (a tensor on another device is an error).
        name: the argument name used in error messages.
        validate_args: check values (NaN, negative, zero); syncs a device tensor.

    Raises:
        InvalidValueError: ``counts`` is None.
        InvalidWeightError: wrong shape, NaN, infinite or negative entries.
        ZeroCountError: a class with a count of 0.

    Example:
        >>> prepare_counts([10, 5], 2)
        tensor([10.,  5.], dtype=torch.float64)
    """
    if counts is None:
        raise InvalidValueError(
            expected(
                name,
                "to be given (the number of training samples of each class)",
                "None",
                "Pass per-class counts, e.g. `weightlab.weights.count_labels(train_labels)` "
                "or `torch.bincount(train_labels)`.",
            )
        )
    reference = torch.empty(0, device=device)
    tensor = as_weight(name, counts, reference, torch.float64)
    if tensor.dim() != 1 or tensor.numel() == 0 or (
        num_classes is not None and tensor.numel() != num_classes
    ):
        want = "(C,)" if num_classes is None else f"({num_classes},)"
        raise InvalidWeightError(
            expected(
                name,
                f"to have shape {want} (one count per class)",
                f"shape {shape_str(tensor.shape)}",
                "Pass one count per class, in class-index order.",
            )
        )
    if validate_args and not torch.compiler.is_compiling():
        _check_count_values(name, tensor)
    return tensor


def _check_count_values(name: str, counts: Tensor) -> None:
    bad = ~torch.isfinite(counts) | (counts < 0)
    if bool(bad.any()):
        at = int(bad.nonzero()[0, 0])
        raise InvalidWeightError(
            expected(
                name,
                "to hold finite, non-negative counts",
                f"{float(counts[at])} at class {at}",
                "Pass the number of training samples of each class.",
            )
        )
    zero = counts == 0
    if bool(zero.any()):
        classes = [int(i) for i in zero.nonzero()[:, 0].tolist()[:5]]
        raise ZeroCountError(
            expected(
                name,
                "to be positive for every class (the loss takes log n_c or 1 / n_c)",
                f"a count of 0 for class{'es' if len(classes) > 1 else ''} "
                f"{', '.join(map(str, classes))}",
                "Drop classes that have no training samples, or add a pseudo-count "
                "(e.g. `counts + 1`).",
            )
        )


def prepare_prior(
    counts: WeightLike | None,
    prior: WeightLike | None,
    num_classes: int | None,
    *,
    device: torch.device | None = None,
    validate_args: bool = True,
) -> Tensor:
    """Return the class prior ``pi_c`` (float64, sums to 1) from ``counts`` or ``prior``.

    Exactly one of the two must be given; a prior that does not sum to 1 is
    rescaled (only ratios matter to a softmax).

    Example:
        >>> prepare_prior([30, 10], None, 2)
        tensor([0.7500, 0.2500], dtype=torch.float64)
    """
    if (counts is None) == (prior is None):
        raise InvalidValueError(
            expected(
                "counts",
                "or `prior` to be given, exactly one of them",
                "both" if counts is not None else "neither",
                "Pass per-class training counts as `counts=`, or class frequencies as `prior=`.",
            )
        )
    name, value = ("counts", counts) if counts is not None else ("prior", prior)
    tensor = prepare_counts(
        value, num_classes, device=device, name=name, validate_args=validate_args
    )
    return tensor / tensor.sum()


def log_prior(prior: Tensor) -> Tensor:
    """Return ``log pi_c`` of a prior that sums to 1 (or of counts, up to a constant)."""
    return torch.log(prior / prior.sum())


def effective_number_weights(counts: Tensor, beta: float) -> Tensor:
    r"""Class-balanced weights of Cui et al. (2019), normalised to sum to the number of classes.

    .. math::
        w_c = \frac{1 - \beta}{1 - \beta^{n_c}}, \qquad
        w_c \leftarrow C \, \frac{w_c}{\sum_k w_k}

    ``beta = 0`` gives uniform weights; ``beta -> 1`` approaches inverse frequency.
    ``1 - beta^n`` is computed as ``-expm1(n log beta)`` (no cancellation).

    Example:
        >>> effective_number_weights(torch.tensor([100.0, 10.0], dtype=torch.float64), 0.99)
        tensor([0.2621, 1.7379], dtype=torch.float64)
    """
    if beta == 0.0:
        return torch.ones_like(counts)
    effective = -torch.expm1(counts * math.log(beta))
    weight = 1.0 / effective
    return weight * (counts.numel() / weight.sum())
