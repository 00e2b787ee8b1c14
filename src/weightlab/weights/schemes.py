"""Weight schemes: per-class weights as a formula of the per-class counts.

Every scheme is a function ``scheme(counts, *, params) -> weights`` registered
by name in :data:`SCHEMES`. It receives the counts of **all** classes as a
float64 array ``n`` of length ``C`` (``N = sum(n)``) and returns the raw,
unnormalised weights. A class with ``n_c = 0`` may get ``inf``; deciding what
such a class gets, clipping and normalising are the job of
:func:`weightlab.weights.class_weights`, which is how schemes are meant to be
used.

Example:
    >>> import numpy as np
    >>> list_schemes()[:3]
    ['inverse', 'balanced', 'sqrt_inverse']
    >>> SCHEMES.get("power")(np.array([100.0, 25.0]), alpha=0.5)
    array([0.1, 0.2])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from weightlab.errors import InvalidValueError, expected
from weightlab.registry import Registry, TunableParam

__all__ = [
    "SCHEMES",
    "SchemeFn",
    "balanced",
    "effective_number",
    "inverse",
    "list_schemes",
    "log",
    "median_frequency",
    "power",
    "scheme_defaults",
    "sqrt_inverse",
    "uniform",
]

FloatArray = npt.NDArray[np.float64]
#: A weight scheme: counts of shape (C,) and keyword-only parameters -> raw weights (C,).
SchemeFn = Callable[..., FloatArray]

#: Every weight scheme by name, in the order the CLI shows them; ``SCHEMES.params(name)``
#: gives a scheme's tunable parameters with the ranges a search uses.
SCHEMES: Registry[SchemeFn] = Registry("scheme", listing="`weightlab.weights.SCHEMES.names()`")


def list_schemes() -> list[str]:
    """Return the names of the registered weight schemes, in registration order.

    Example:
        >>> list_schemes()
        ['inverse', 'balanced', 'sqrt_inverse', 'power', 'effective_number', 'median_frequency', 'log', 'uniform']
    """  # noqa: E501
    return SCHEMES.names()


def scheme_defaults(name: str) -> dict[str, float]:
    """Return the keyword parameters of scheme ``name`` with their default values.

    Raises:
        UnknownNameError: if no scheme is registered as ``name``.

    Example:
        >>> scheme_defaults("effective_number")
        {'beta': 0.999}
        >>> scheme_defaults("inverse")
        {}
    """
    fn = SCHEMES.get(name)
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _finite_number(value: object) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and bool(np.isfinite(value))
    )


@SCHEMES.register("inverse")
def inverse(counts: FloatArray) -> FloatArray:
    """Inverse class frequency.

    .. math:: w_c = 1 / n_c

    The classic cost-sensitive re-weighting, the baseline of e.g. Huang et al.
    2016, "Learning Deep Representation for Imbalanced Classification" (CVPR)
    and Cui et al. 2019. Equal to ``power`` with ``alpha=1`` and, up to scale,
    to ``balanced``. Strong: with a ratio of 100 between the largest and the
    smallest class, the weights differ 100-fold, which can destabilise training
    of deep networks (Cui et al. 2019); consider ``sqrt_inverse`` or ``clip``.

    Args:
        counts: samples per class, shape ``(C,)``.

    Returns:
        ``1 / counts``, shape ``(C,)``; ``inf`` where the count is 0.

    Example:
        >>> inverse(np.array([100.0, 10.0]))
        array([0.01, 0.1 ])
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 / counts


@SCHEMES.register("balanced")
def balanced(counts: FloatArray) -> FloatArray:
    r"""scikit-learn's ``"balanced"`` class weight.

    .. math:: w_c = \frac{N}{C \, n_c}, \qquad N = \sum_c n_c

    Inverse frequency scaled so that every class carries the same total weight
    and the weighted count :math:`\sum_c n_c w_c` equals ``N``: the average
    sample weight is 1. Identical to
    ``sklearn.utils.class_weight.compute_class_weight("balanced", ...)``
    (King & Zeng 2001, "Logistic Regression in Rare Events Data") when passed
    through :func:`~weightlab.weights.class_weights` with ``normalize="none"``.

    Args:
        counts: samples per class, shape ``(C,)``.

    Returns:
        ``N / (C * counts)``, shape ``(C,)``; ``inf`` where the count is 0.

    Example:
        >>> balanced(np.array([30.0, 10.0]))
        array([0.66666667, 2.        ])
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(counts.sum()) / (counts.size * counts)


@SCHEMES.register("sqrt_inverse")
def sqrt_inverse(counts: FloatArray) -> FloatArray:
    r"""Square root of the inverse class frequency.

    .. math:: w_c = 1 / \sqrt{n_c}

    A milder re-weighting than ``inverse``: the loss-weight counterpart of the
    square-root sampling of Mahajan et al. 2018, "Exploring the Limits of Weakly
    Supervised Pretraining" (ECCV) and Kang et al. 2020, "Decoupling
    Representation and Classifier for Long-Tailed Recognition" (ICLR). Equal
    to ``power`` with ``alpha=0.5``.

    Args:
        counts: samples per class, shape ``(C,)``.

    Returns:
        ``counts ** -0.5``, shape ``(C,)``; ``inf`` where the count is 0.

    Example:
        >>> sqrt_inverse(np.array([100.0, 4.0]))
        array([0.1, 0.5])
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 / np.sqrt(counts)


@SCHEMES.register("power", params={"alpha": TunableParam(0.5, 0.0, 1.0)})
def power(counts: FloatArray, *, alpha: float = 0.5) -> FloatArray:
    r"""Inverse class frequency raised to a power.

    .. math:: w_c = n_c^{-\alpha}

    Interpolates between no re-weighting (``alpha=0``: uniform), square-root
    (``alpha=0.5``) and full inverse frequency (``alpha=1``); the exponent is a
    hyperparameter worth tuning. It is the loss-weight counterpart of the
    sampling :math:`p_c \propto n_c^{q}` of Kang et al. 2020, "Decoupling
    Representation and Classifier for Long-Tailed Recognition" (ICLR), with
    :math:`\alpha = 1 - q`.

    Args:
        counts: samples per class, shape ``(C,)``.
        alpha: the exponent, a finite number >= 0. Default 0.5.

    Returns:
        ``counts ** -alpha``, shape ``(C,)``; ``inf`` where the count is 0 (and
        ``alpha > 0``).

    Raises:
        InvalidValueError: if ``alpha`` is negative, not finite or not a number.

    Example:
        >>> power(np.array([100.0, 4.0]), alpha=1.0)
        array([0.01, 0.25])
        >>> power(np.array([100.0, 4.0]), alpha=0.0)
        array([1., 1.])
    """
    if not _finite_number(alpha) or alpha < 0:
        raise InvalidValueError(
            expected(
                "alpha",
                "to be a finite number >= 0",
                repr(alpha),
                "Use alpha=0 for uniform, 0.5 for square-root inverse, 1 for inverse frequency.",
            )
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.power(counts, -float(alpha))


@SCHEMES.register(
    "effective_number", params={"beta": TunableParam(0.999, 0.9, 0.99999, log_complement=True)}
)
def effective_number(counts: FloatArray, *, beta: float = 0.999) -> FloatArray:
    r"""Inverse effective number of samples (class-balanced weighting).

    .. math:: w_c = \frac{1 - \beta}{1 - \beta^{n_c}}

    From Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of
    Samples" (CVPR): :math:`(1 - \beta^{n}) / (1 - \beta)` is the expected
    volume covered by ``n`` samples when each new sample overlaps the ones seen
    with probability :math:`\beta`. ``beta=0`` gives uniform weights and
    ``beta -> 1`` inverse frequency. The paper normalises the weights to sum to
    ``C``, which is ``normalize="mean"`` and the default of
    :func:`~weightlab.weights.class_weights`; it tunes
    :math:`\beta \in \{0.9, 0.99, 0.999, 0.9999\}`.

    Args:
        counts: samples per class, shape ``(C,)``.
        beta: overlap probability in ``[0, 1)``. Default 0.999.

    Returns:
        ``(1 - beta) / (1 - beta ** counts)``, shape ``(C,)``; ``inf`` where the
        count is 0.

    Raises:
        InvalidValueError: if ``beta`` is not a number in ``[0, 1)``.

    Example:
        >>> effective_number(np.array([1000.0, 10.0]), beta=0.99)
        array([0.01000043, 0.1045829 ])
    """
    if not _finite_number(beta) or not 0.0 <= beta < 1.0:
        raise InvalidValueError(
            expected(
                "beta",
                "to be a number in [0, 1)",
                repr(beta),
                "Use e.g. beta=0.999 (Cui et al. 2019); values closer to 1 weight rare "
                "classes more.",
            )
        )
    beta = float(beta)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (1.0 - beta) / (1.0 - np.power(beta, counts))


@SCHEMES.register("median_frequency")
def median_frequency(counts: FloatArray) -> FloatArray:
    r"""Median frequency balancing.

    .. math:: w_c = \frac{\operatorname{median}_k f_k}{f_c}, \qquad f_c = n_c / N

    From Eigen & Fergus 2015, "Predicting Depth, Surface Normals and Semantic
    Labels with a Common Multi-Scale Convolutional Architecture" (ICCV), and used
    by SegNet. In segmentation :math:`f_c` is the number of pixels of class
    ``c`` divided by the number of pixels *of the images in which c is
    present*; from counts alone that cannot be known, so here
    :math:`f_c = n_c / N`. The median runs over the classes with
    :math:`n_c > 0`. The median class gets weight 1.

    Args:
        counts: samples (or pixels) per class, shape ``(C,)``.

    Returns:
        ``median(f) / f``, shape ``(C,)``; ``inf`` where the count is 0.

    Example:
        >>> median_frequency(np.array([60.0, 30.0, 10.0]))
        array([0.5, 1. , 3. ])
    """
    total = counts.sum()
    present = counts > 0
    if not present.any():
        return np.full(counts.shape, np.inf)
    freq: FloatArray = counts / total
    median = float(np.median(freq[present]))
    with np.errstate(divide="ignore", invalid="ignore"):
        return median / freq


@SCHEMES.register("log", params={"c": TunableParam(1.02, 1.001, 2.0, log=True)})
def log(counts: FloatArray, *, c: float = 1.02) -> FloatArray:
    r"""Inverse logarithm of the class probability (ENet weighting).

    .. math:: w_c = \frac{1}{\ln(c + p_c)}, \qquad p_c = n_c / N

    From Paszke et al. 2016, "ENet: A Deep Neural Network Architecture for
    Real-Time Semantic Segmentation". Bounded: with ``c = 1.02`` the weights lie
    in ``[1 / ln(2.02), 1 / ln(1.02)]``, about ``[1.42, 50.5]``, however rare a
    class is. Larger ``c`` gives flatter weights.

    Args:
        counts: samples (or pixels) per class, shape ``(C,)``.
        c: the offset, a finite number > 1. Default 1.02.

    Returns:
        ``1 / log(c + counts / N)``, shape ``(C,)``.

    Raises:
        InvalidValueError: if ``c`` is not a finite number > 1.

    Example:
        >>> log(np.array([90.0, 10.0]))
        array([1.53297776, 8.8238913 ])
    """
    if not _finite_number(c) or c <= 1.0:
        raise InvalidValueError(
            expected(
                "c",
                "to be a finite number > 1",
                repr(c),
                "Use c=1.02 (Paszke et al. 2016); larger c gives flatter weights.",
            )
        )
    total = float(counts.sum())
    if total == 0:
        return np.full(counts.shape, 1.0 / np.log(float(c)))
    return 1.0 / np.log(float(c) + counts / total)


@SCHEMES.register("uniform")
def uniform(counts: FloatArray) -> FloatArray:
    """No re-weighting: every class weighs 1.

    .. math:: w_c = 1

    The baseline every other scheme is compared against.

    Args:
        counts: samples per class, shape ``(C,)``.

    Returns:
        Ones, shape ``(C,)``.

    Example:
        >>> uniform(np.array([90.0, 10.0]))
        array([1., 1.])
    """
    return np.ones(counts.shape, dtype=np.float64)
