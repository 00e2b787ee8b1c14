r"""``digits-lt``: scikit-learn's 8x8 digits made long-tailed, as CIFAR-10-LT is.

The CIFAR-10-LT protocol (Cui et al. 2019; Cao et al. 2019) keeps, of class
``c`` (0-based, ``C`` classes), an exponentially decaying number of training
examples

.. math::
    n_c = \lfloor n_{max} \cdot \rho^{-c / (C - 1)} \rfloor

where :math:`\rho = n_0 / n_{C-1}` is the imbalance ratio, while the test split
stays balanced. Here the digits (about 180 images per class) are split per
class into a balanced test split, a balanced validation split, and a training
pool from which the long-tailed training split is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from weightlab.errors import InvalidValueError, expected

__all__ = ["DigitsLT", "long_tail_counts", "load_digits_lt"]

#: Images per class kept aside for the balanced test split.
TEST_PER_CLASS = 50
#: Images per class kept aside for the balanced validation split.
VAL_PER_CLASS = 20
#: Training examples of the head class (class 0).
HEAD_COUNT = 100


def long_tail_counts(num_classes: int, head: int, imbalance_ratio: float) -> list[int]:
    r"""Per-class counts of an exponential long tail, head first.

    .. math:: n_c = \lfloor head \cdot \rho^{-c/(C-1)} \rfloor, at least 1

    Example:
        >>> long_tail_counts(5, 100, 100.0)
        [100, 31, 10, 3, 1]
    """
    if imbalance_ratio < 1 or not np.isfinite(imbalance_ratio):
        raise InvalidValueError(
            expected(
                "imbalance_ratio",
                "to be a finite number >= 1 (head count / tail count)",
                repr(imbalance_ratio),
                "Use 1 for balanced data, 10 or 100 for long tails.",
            )
        )
    if num_classes == 1:
        return [head]
    return [
        max(1, int(np.floor(head * imbalance_ratio ** (-c / (num_classes - 1)) + 1e-9)))
        for c in range(num_classes)
    ]


@dataclass(frozen=True)
class DigitsLT:
    """The three splits of ``digits-lt``; images are flat float32 rows of 64 pixels in [0, 1]."""

    x_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.int64]
    x_val: npt.NDArray[np.float32]
    y_val: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.float32]
    y_test: npt.NDArray[np.int64]
    class_names: tuple[str, ...]
    imbalance_ratio: float


def load_digits_lt(imbalance_ratio: float = 10.0, *, seed: int = 0) -> DigitsLT:
    """Load scikit-learn's digits as a long-tailed training split and balanced val/test splits.

    Class ``c`` keeps ``long_tail_counts(10, 100, imbalance_ratio)[c]`` training
    images; validation has 20 and test 50 images of every class. The same
    ``seed`` always gives the same splits.

    Example:
        >>> data = load_digits_lt(10.0)
        >>> np.bincount(data.y_train).tolist()
        [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
        >>> np.bincount(data.y_test).tolist() == [50] * 10
        True
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    counts = long_tail_counts(10, HEAD_COUNT, imbalance_ratio)
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        test.append(idx[:TEST_PER_CLASS])
        val.append(idx[TEST_PER_CLASS : TEST_PER_CLASS + VAL_PER_CLASS])
        train.append(idx[TEST_PER_CLASS + VAL_PER_CLASS :][: counts[c]])
    tr, va, te = (rng.permutation(np.concatenate(parts)) for parts in (train, val, test))
    return DigitsLT(
        x_train=x[tr],
        y_train=y[tr],
        x_val=x[va],
        y_val=y[va],
        x_test=x[te],
        y_test=y[te],
        class_names=tuple(str(c) for c in range(10)),
        imbalance_ratio=float(imbalance_ratio),
    )
