"""The lab's data sets as tensors: built-in ones and the user's own files.

Every loader returns a :class:`LabData`: train, validation and test tensors,
the class names and the *declared input shape* of one example. The engine asks
:meth:`LabData.inputs` for the layout an architecture consumes, so the very
same examples feed every network:

============  ==================  ======================  =====================
data set      ``input_shape``     ``mlp``                 ``cnn`` / ``gru``, ``lstm``
============  ==================  ======================  =====================
digits-lt     ``(1, 8, 8)``       ``(N, 64)``             ``(N, 1, 8, 8)`` / ``(N, 8, 8)``
synthetic     ``(F,)``            ``(N, F)``              not image/sequence-shaped
CSV/Parquet   ``(F,)``            ``(N, F)``              not image/sequence-shaped
``.npz``      declared            ``(N, prod(shape))``    ``(C, H, W)`` / ``(T, F)``
============  ==================  ======================  =====================

A sequence network reads an image ``(1, H, W)`` row by row (``H`` steps of
``W`` features). The validation split, used for the per-epoch validation
curve and the best-epoch checkpoint, never overlaps the test split; for user
data it is a stratified part of the training rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from weightlab.errors import InvalidValueError, expected, names
from weightlab.lab import files
from weightlab.lab.architectures import check_arch, layout_shape

__all__ = [
    "BUILTIN_DATASETS",
    "LabData",
    "load_array_file",
    "load_data",
    "load_digits",
    "load_synthetic",
    "load_table",
]

#: Names :func:`load_data` understands besides file paths.
BUILTIN_DATASETS = ("digits-lt", "synthetic")
#: File suffixes :func:`load_data` reads (features and labels; see :mod:`weightlab.lab.files`).
FILE_SUFFIXES = files.DATA_SUFFIXES


@dataclass(frozen=True)
class LabData:
    """Three splits as tensors, the class names and the shape of one example.

    Attributes:
        x_train: training inputs, float32, shape ``(N, *input_shape)``.
        y_train: training labels, int64 in ``[0, C)``, shape ``(N,)``.
        x_val: validation inputs (model selection only), ``(N_val, *input_shape)``.
        y_val: validation labels.
        x_test: test inputs (reported metrics only), ``(N_test, *input_shape)``.
        y_test: test labels.
        class_names: name of each class index, ``C`` entries.
        input_shape: shape of one example, as declared by the data set.
        name: the data set's name or file path.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    name: str = ""

    @property
    def num_classes(self) -> int:
        """Number of classes ``C``."""
        return len(self.class_names)

    @property
    def train_counts(self) -> npt.NDArray[np.int64]:
        """Training examples per class, shape ``(C,)`` (the input of every weight scheme)."""
        return np.bincount(self.y_train.numpy(), minlength=self.num_classes).astype(np.int64)

    def arch_shape(self, arch: str) -> tuple[int, ...]:
        """Shape of one example as architecture ``arch`` consumes it (its registered layout).

        Raises:
            InvalidValueError: the architecture is unknown or cannot read this shape.

        Example:
            >>> data = load_data("digits-lt")
            >>> data.arch_shape("mlp"), data.arch_shape("cnn"), data.arch_shape("gru")
            ((64,), (1, 8, 8), (8, 8))
        """
        return layout_shape(check_arch(arch).layout, self.input_shape, arch)

    def inputs(self, arch: str) -> LabData:
        """The same data with the inputs reshaped for ``arch`` (views, no copies).

        Example:
            >>> load_data("digits-lt").inputs("gru").x_train.shape[1:]
            torch.Size([8, 8])
        """
        shape = self.arch_shape(arch)
        return replace(
            self,
            x_train=self.x_train.reshape(-1, *shape),
            x_val=self.x_val.reshape(-1, *shape),
            x_test=self.x_test.reshape(-1, *shape),
        )


def _tensors(
    x_tr: npt.ArrayLike,
    y_tr: npt.ArrayLike,
    x_va: npt.ArrayLike,
    y_va: npt.ArrayLike,
    x_te: npt.ArrayLike,
    y_te: npt.ArrayLike,
    shape: tuple[int, ...],
    class_names: Sequence[str],
    name: str,
) -> LabData:
    def fx(a: npt.ArrayLike) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).reshape(-1, *shape)

    def fy(a: npt.ArrayLike) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

    return LabData(
        fx(x_tr), fy(y_tr), fx(x_va), fy(y_va), fx(x_te), fy(y_te), tuple(class_names), shape, name
    )


def load_digits(imbalance_ratio: float = 10.0, *, seed: int = 0) -> LabData:
    """``digits-lt`` (see :mod:`weightlab.lab.digits`) as tensors of shape ``(N, 1, 8, 8)``.

    Example:
        >>> data = load_digits(10.0)
        >>> data.x_train.shape, data.num_classes, data.train_counts[:3].tolist()
        (torch.Size([403, 1, 8, 8]), 10, [100, 77, 59])
    """
    from weightlab.lab.digits import load_digits_lt

    d = load_digits_lt(imbalance_ratio, seed=seed)
    return _tensors(
        d.x_train, d.y_train, d.x_val, d.y_val, d.x_test, d.y_test,
        (1, 8, 8), d.class_names, "digits-lt",
    )  # fmt: skip


def _check_number(name: str, value: float, low: float, high: float, fix: str) -> None:
    if not (isinstance(value, int | float) and low <= value <= high and math.isfinite(value)):
        raise InvalidValueError(
            expected(name, f"to be a number in [{low}, {high}]", repr(value), fix)
        )


def load_synthetic(
    *,
    n_classes: int = 5,
    n_features: int = 20,
    imbalance_ratio: float = 10.0,
    head: int = 200,
    class_sep: float = 1.0,
    label_noise: float = 0.0,
    n_informative: int | None = None,
    val_per_class: int = 40,
    test_per_class: int = 100,
    seed: int = 0,
) -> LabData:
    """Tabular classes of Gaussian clusters with a long-tailed training split.

    The points come from :func:`sklearn.datasets.make_classification` (one
    cluster per class, ``class_sep`` apart, no label flips) drawn balanced;
    class ``c`` then keeps ``floor(head * imbalance_ratio ** (-c / (C - 1)))``
    training rows (the exponential profile of CIFAR-10-LT), while validation
    (``val_per_class``) and test (``test_per_class``) stay balanced. A fraction
    ``label_noise`` of the *training* labels is replaced by a uniformly drawn
    class; validation and test labels stay clean.

    Args:
        n_classes: number of classes ``C`` (>= 2).
        n_features: features per row ``F``.
        imbalance_ratio: head count / tail count (1 = balanced).
        head: training rows of class 0.
        class_sep: distance scale between the class clusters (larger = easier).
        label_noise: fraction in [0, 1] of training labels replaced at random.
        n_informative: informative features (default: ``min(F, max(2, C))``).
        val_per_class: validation rows per class.
        test_per_class: test rows per class.
        seed: seed of everything random here.

    Example:
        >>> data = load_synthetic(n_classes=3, n_features=4, imbalance_ratio=4, head=40)
        >>> data.train_counts.tolist(), data.x_train.shape[1:], data.y_test.bincount().tolist()
        ([40, 20, 10], torch.Size([4]), [100, 100, 100])
    """
    from sklearn.datasets import make_classification

    from weightlab.lab.digits import long_tail_counts

    _check_number("n_classes", n_classes, 2, 10_000, "Use at least two classes.")
    _check_number("n_features", n_features, 1, 100_000, "Use at least one feature.")
    _check_number("label_noise", label_noise, 0.0, 1.0, "Use a fraction such as 0.1.")
    _check_number("class_sep", class_sep, 0.0, 1e6, "Use a positive separation such as 1.0.")
    _check_number("head", head, 1, 10_000_000, "Use a positive head-class count.")
    counts = long_tail_counts(int(n_classes), int(head), float(imbalance_ratio))
    informative = n_informative or min(int(n_features), max(2, int(n_classes)))
    if not 1 <= informative <= n_features or n_classes > 2**informative:
        raise InvalidValueError(
            expected(
                "n_informative",
                f"to lie in [1, n_features={n_features}] with 2**n_informative >= n_classes",
                repr(n_informative),
                "Raise n_features or n_informative.",
            )
        )
    per_class = head + val_per_class + test_per_class
    x, y = make_classification(
        n_samples=per_class * n_classes * 2,
        n_features=n_features,
        n_informative=informative,
        n_redundant=0,
        n_repeated=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        class_sep=class_sep,
        flip_y=0.0,
        random_state=seed,
    )
    rng = np.random.default_rng(seed)
    parts: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    for c in range(n_classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        parts[2].append(idx[:test_per_class])
        parts[1].append(idx[test_per_class : test_per_class + val_per_class])
        parts[0].append(idx[test_per_class + val_per_class :][: counts[c]])
    tr, va, te = (rng.permutation(np.concatenate(p)) for p in parts)
    y_tr = y[tr].copy()
    noisy = rng.random(len(tr)) < label_noise
    y_tr[noisy] = rng.integers(0, n_classes, int(noisy.sum()))
    return _tensors(
        x[tr], y_tr, x[va], y[va], x[te], y[te],
        (int(n_features),), [str(c) for c in range(n_classes)], "synthetic",
    )  # fmt: skip


def _encode_labels(
    y: npt.NDArray[Any], source: str, argument: str = "target"
) -> tuple[npt.NDArray[np.int64], list[str]]:
    """Map labels to ``0..C-1`` by sorted class value; return the codes and the names.

    ``argument`` names the labels' argument in messages (``target``, ``y``, ...).
    """
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise InvalidValueError(
            expected(
                argument,
                f"to hold at least two classes in {source}",
                f"{len(classes)} ({names(classes.tolist())})",
                "Check the labels.",
            )
        )
    return codes.astype(np.int64), [str(c) for c in classes.tolist()]


def _split(
    x: npt.NDArray[Any],
    y: npt.NDArray[np.int64],
    fraction: float,
    seed: int,
    what: str,
    argument: str = "target",
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64], npt.NDArray[Any], npt.NDArray[np.int64]]:
    """A stratified split: (rest x, rest y, part x, part y) with ``fraction`` in the part."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    if counts.min() < 2:
        rare = np.flatnonzero(counts < 2).tolist()
        raise InvalidValueError(
            expected(
                argument,
                f"to have at least 2 rows of every class for a stratified {what} split",
                f"fewer for class index {rare}",
                "Add rows of those classes or drop them from the file.",
            )
        )
    rest_x, part_x, rest_y, part_y = train_test_split(
        x, y, test_size=fraction, stratify=y, random_state=seed
    )
    return rest_x, rest_y, part_x, part_y


def _finish_user(
    x: npt.NDArray[Any],
    y: npt.NDArray[np.int64],
    class_names: list[str],
    shape: tuple[int, ...],
    *,
    val_fraction: float,
    test_fraction: float,
    standardize: bool,
    seed: int,
    name: str,
    argument: str = "target",
) -> LabData:
    _check_number("val_fraction", val_fraction, 0.01, 0.9, "Use a fraction such as 0.2.")
    _check_number("test_fraction", test_fraction, 0.01, 0.9, "Use a fraction such as 0.2.")
    x_tr, y_tr, x_te, y_te = _split(x, y, test_fraction, seed, "test", argument)
    x_tr, y_tr, x_va, y_va = _split(x_tr, y_tr, val_fraction, seed + 1, "validation", argument)
    if standardize:
        mean = x_tr.mean(axis=0)
        std = x_tr.std(axis=0)
        std[std == 0] = 1.0
        x_tr, x_va, x_te = ((a - mean) / std for a in (x_tr, x_va, x_te))
    return _tensors(x_tr, y_tr, x_va, y_va, x_te, y_te, shape, class_names, name)


def load_table(
    path: str | Path,
    *,
    target: str | None = None,
    features: Sequence[str] | str | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    standardize: bool = True,
    seed: int = 0,
) -> LabData:
    r"""Read a CSV or Parquet file: one target column, numeric feature columns.

    The file is read by :func:`weightlab.lab.files.read_table_examples`, the
    reader ``weightlab weights`` uses too. Labels (numbers or strings) become
    class indices in sorted order, and the class names keep the original
    values. The test split (``test_fraction``) and then the validation split
    (``val_fraction`` of the remaining rows) are stratified random parts of the
    file. Features are standardised with the training rows' mean and standard
    deviation unless ``standardize=False``.

    Args:
        path: a ``.csv``, ``.parquet`` or ``.pq`` file.
        target: the target column, which holds each row's label (default: the
            only column, else the first column named ``target``, ``label``, ``y``
            or ``class``; without one, the message lists the file's columns).
        features: feature columns (default: every other column); one name is one column.
        val_fraction: fraction of the non-test rows used for validation.
        test_fraction: fraction of all rows used for testing.
        standardize: z-score the features with training statistics.
        seed: seed of the splits.

    Raises:
        InvalidValueError: a missing file, no or an unknown target column, no or
            unknown feature columns (or the target among them), a non-numeric,
            missing or infinite feature value, missing labels, or a class too
            rare to split.
        ImportError: a Parquet file without pyarrow installed.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp(), "t.csv")
        >>> _ = path.write_text("a,kind\n" + "".join(f"{i},{'xy'[i % 2]}\n" for i in range(20)))
        >>> load_table(path, target="kind").class_names
        ('x', 'y')
    """
    got = files.read_table_examples(path, target=target, features=features)
    y, class_names = _encode_labels(got.y, got.description, "target")
    return _finish_user(
        got.x, y, class_names, got.input_shape,
        val_fraction=val_fraction, test_fraction=test_fraction,
        standardize=standardize, seed=seed, name=str(Path(path)), argument="target",
    )  # fmt: skip


def load_array_file(
    path: str | Path,
    *,
    input_shape: Sequence[int] | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    standardize: bool = False,
    seed: int = 0,
) -> LabData:
    """Read an ``.npz`` holding ``X`` (rows), ``y`` (labels) and the input shape.

    The file is read by :func:`weightlab.lab.files.read_npz_examples`. The
    shape of one example comes from ``input_shape=`` or, failing that, from an
    ``input_shape`` array saved in the file, or else from ``X.shape[1:]``;
    ``X`` is reshaped to ``(N, *input_shape)``. An optional ``class_names``
    array names the sorted label values. Splits are as in :func:`load_table`.

    Raises:
        InvalidValueError: a missing file, ``X`` or ``y`` missing, sizes that
            disagree, a non-numeric or non-finite ``X``, or missing labels.
        ShapeMismatchError: ``y`` not one label per row of ``X``, or an
            ``input_shape`` that does not hold one row.
    """
    got = files.read_npz_examples(path, input_shape=input_shape)
    y, class_names = _encode_labels(got.y, got.description, "y")
    if got.class_names is not None:
        class_names = list(got.class_names)
    return _finish_user(
        got.x, y, class_names, got.input_shape,
        val_fraction=val_fraction, test_fraction=test_fraction,
        standardize=standardize, seed=seed, name=str(Path(path)), argument="y",
    )  # fmt: skip


def load_data(name_or_path: str | Path, **params: Any) -> LabData:
    """Load a built-in data set by name or a user file by path.

    ``"digits-lt"`` takes ``imbalance_ratio``, ``seed``; ``"synthetic"`` takes
    the arguments of :func:`load_synthetic`; a ``.csv``/``.parquet`` path those
    of :func:`load_table` (``target=COLUMN``, ``features=[...]``, ...); an
    ``.npz`` path those of :func:`load_array_file`.
    An ``.npy`` file holds labels alone (``weightlab weights`` counts them) and
    is refused here with a message that says so.

    Raises:
        InvalidValueError: an unknown name, a missing file, an unreadable suffix
            (an ``.npy``: labels without features), or a parameter the loader
            does not take.

    Example:
        >>> load_data("digits-lt", imbalance_ratio=100).train_counts.tolist()
        [100, 59, 35, 21, 12, 7, 4, 2, 1, 1]
        >>> load_data("digits")
        Traceback (most recent call last):
        ...
        weightlab.errors.InvalidValueError: Expected `name_or_path` to be one of 'digits-lt', \
'synthetic' or an existing .csv, .parquet, .pq or .npz file, but got 'digits'. Check the spelling \
or the path.
    """
    import inspect

    key = str(name_or_path)
    loaders: dict[str, Any] = {"digits-lt": load_digits, "synthetic": load_synthetic}
    path = Path(key)
    suffix = path.suffix.lower()
    if key in loaders:
        loader = loaders[key]
    elif suffix in files.LABEL_SUFFIXES and path.is_file():
        files.check_file(key, FILE_SUFFIXES, spelling=files.Spelling(data="name_or_path"))
        loader = load_array_file if suffix == ".npz" else load_table
    else:
        raise InvalidValueError(
            expected(
                "name_or_path",
                f"to be one of {names(BUILTIN_DATASETS)} or an existing "
                ".csv, .parquet, .pq or .npz file",
                repr(key),
                "Check the spelling or the path.",
            )
        )
    accepted = [p for p in inspect.signature(loader).parameters if p != "path"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InvalidValueError(
            expected(
                "params",
                f"to be among {names(accepted)} for {key!r}",
                names(unknown),
                "Drop or rename them.",
            )
        )
    if loader in (load_table, load_array_file):
        return loader(path, **params)  # type: ignore[no-any-return]
    return loader(**params)  # type: ignore[no-any-return]
