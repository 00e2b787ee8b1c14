"""Read the class labels of a data set named on the command line (``--data``).

Sources: the built-in ``digits-lt`` (its long-tailed training split), a label
column of a ``.csv`` or ``.parquet`` file, or a 1-D ``.npy`` array. Integer
labels are class indices; any other labels (strings, booleans) are class names,
mapped to indices in sorted order and kept as names.

Multi-label 0/1 targets (:func:`read_multilabel`): an ``(N, L)`` ``.npy`` array,
or 0/1 label columns of a ``.csv`` or ``.parquet`` file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weightlab.errors import InvalidValueError, WeightlabError, expected, names

__all__ = [
    "BUILTIN",
    "LABEL_COLUMNS",
    "SUFFIXES",
    "Labels",
    "MultiLabels",
    "read_labels",
    "read_multilabel",
]

#: Built-in data sets ``--data`` accepts by name.
BUILTIN = ("digits-lt",)
#: File suffixes ``--data`` accepts.
SUFFIXES = (".csv", ".parquet", ".pq", ".npy")
#: Columns taken as the label column, in this order, when ``--column`` is not given.
LABEL_COLUMNS = ("target", "label", "y", "class")

PARQUET_HINT = "pip install 'weightlab[parquet]'"
_SUFFIX_TEXT = ", ".join(SUFFIXES[:-1]) + " or " + SUFFIXES[-1]


@dataclass(frozen=True)
class Labels:
    """Labels read from a source, not yet checked or counted.

    Attributes:
        values: one label per sample, shape ``(N,)``: class indices (integers,
            or whole-number floats that ``count_labels`` checks) or, when
            ``class_names`` is given, indices into it.
        class_names: the name of each class index, or ``None`` when the labels
            are themselves indices (the names are then ``"0"``, ``"1"``, ...).
        description: where the labels come from, for the output's title.
    """

    values: np.ndarray[Any, Any]
    class_names: tuple[str, ...] | None
    description: str


def read_labels(
    data: str,
    *,
    column: str | None = None,
    imbalance_ratio: float | None = None,
    seed: int | None = None,
) -> Labels:
    """Read the labels of ``data``: ``'digits-lt'`` or a path to a .csv, .parquet or .npy file.

    Args:
        data: the built-in name or the file path.
        column: the label column of a table; by default the only column, or
            the first of :data:`LABEL_COLUMNS` the table has.
        imbalance_ratio: ``digits-lt`` only: head count / tail count (default 10).
        seed: ``digits-lt`` only: the seed of its split (default 0).

    Raises:
        InvalidValueError: a missing file, an unknown suffix, a missing or
            unknown column, missing values, an option that does not apply to
            the source, an unreadable file, or no labels at all.
        ImportError: a Parquet file without pyarrow installed (the message
            says how to install it).

    Example:
        >>> labels = read_labels("digits-lt", imbalance_ratio=100)
        >>> labels.values.shape, labels.class_names[:3], labels.description
        ((242,), ('0', '1', '2'), 'digits-lt training split (imbalance ratio 100, seed 0)')
    """
    if data in BUILTIN:
        if column is not None:
            raise _not_applicable("--column", data)
        return _digits_lt(10.0 if imbalance_ratio is None else imbalance_ratio, seed or 0)
    path = _label_file(
        data, imbalance_ratio, seed, f"to be {names(BUILTIN)} or an existing {_SUFFIX_TEXT} file"
    )
    if path.suffix.lower() == ".npy":
        if column is not None:
            raise _not_applicable("--column", data)
        values, description = _read_npy(path), path.name
    else:
        values, description = _read_column(path, column)
    _check_not_empty(len(values), "label", description)
    return _as_labels(values, description)


@dataclass(frozen=True)
class MultiLabels:
    """Multi-label 0/1 targets read from a source, every value checked to be 0 or 1.

    Attributes:
        values: shape ``(N, L)``, int8 0/1.
        label_names: the name of each label: the column names of a table,
            ``"0"``, ``"1"``, ... for an array.
        description: where the labels come from, for the output's title.
    """

    values: np.ndarray[Any, Any]
    label_names: tuple[str, ...]
    description: str


def read_multilabel(
    data: str,
    *,
    columns: Sequence[str] = (),
    imbalance_ratio: float | None = None,
    seed: int | None = None,
) -> MultiLabels:
    """Read multi-label 0/1 targets: an ``(N, L)`` .npy array, or 0/1 columns of a table.

    Args:
        data: a path to a .csv, .parquet or .npy file (the built-in data set is
            single-label and refused).
        columns: the label columns of a table, in this order; by default every column.
        imbalance_ratio: not applicable to a file (refused when given).
        seed: not applicable to a file (refused when given).

    Raises:
        InvalidValueError: the built-in data set, a missing file, an unknown
            suffix, an unknown column, missing values, a value other than 0/1,
            an array that is not 2-D, an unreadable file, or no samples.
        ImportError: a Parquet file without pyarrow installed.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "y.npy")
        >>> np.save(path, np.array([[1, 0], [1, 1], [0, 0]]))
        >>> got = read_multilabel(path)
        >>> got.values.sum(0).tolist(), got.label_names, got.description
        ([2, 1], ('0', '1'), 'y.npy')
    """
    if data in BUILTIN:
        raise InvalidValueError(
            expected(
                "--data",
                f"to be a {_SUFFIX_TEXT} file of 0/1 labels with --multilabel",
                f"{data!r}, which is single-label (one class per sample)",
                "Pass --data labels.npy (an (N, L) 0/1 array) or a table of 0/1 label columns, "
                "or drop --multilabel.",
            )
        )
    path = _label_file(
        data, imbalance_ratio, seed, f"to be an existing {_SUFFIX_TEXT} file with --multilabel"
    )
    if path.suffix.lower() == ".npy":
        if columns:
            raise _not_applicable("--column", data)
        values = _load_npy(path)
        if values.ndim != 2 or values.shape[1] == 0:
            raise InvalidValueError(
                expected(
                    "--data",
                    "to hold a 2-D (N, L) array of 0/1 labels with --multilabel",
                    f"shape {values.shape} in {path.name}",
                    "Save one row of 0/1 labels per sample, or drop --multilabel for a 1-D "
                    "array of class indices.",
                )
            )
        label_names = tuple(str(j) for j in range(values.shape[1]))
        fix = "Save 0/1 (or boolean) labels, or drop --multilabel for class indices."
        for j in range(values.shape[1]):
            _check_indicators(values[:, j], f"label {j} of {path.name}", fix)
    else:
        wanted = list(columns)
        frame = _read_table(
            path, lambda available: [_pick_column(path, available, c) for c in wanted] or available
        )
        label_names = tuple(str(c) for c in frame.columns)
        fix = (
            "Name the 0/1 label columns with --column (repeat it), or drop --multilabel for "
            "class indices."
        )
        for name in label_names:
            where = f"column {name!r} of {path.name}"
            _check_no_missing(frame[name], where)
            _check_indicators(frame[name].to_numpy(), where, fix)
        values = frame.to_numpy()
    _check_not_empty(values.shape[0], "sample", path.name)
    return MultiLabels(values.astype(np.int8), label_names, path.name)


def _label_file(
    data: str, imbalance_ratio: float | None, seed: int | None, existing: str
) -> Path:
    """``data`` as the path of an existing label file with a known suffix.

    ``existing`` is the expectation a missing file is told.
    """
    for option, value in (("--imbalance-ratio", imbalance_ratio), ("--seed", seed)):
        if value is not None:
            raise _not_applicable(option, data)
    path = Path(data)
    if not path.is_file():
        raise InvalidValueError(
            expected("--data", existing, f"{data!r}, which is no such file", "Check the path.")
        )
    if path.suffix.lower() not in SUFFIXES:
        raise InvalidValueError(
            expected(
                "--data",
                f"to be a {_SUFFIX_TEXT} file",
                repr(data),
                "Save the labels in one of those formats.",
            )
        )
    return path


def _check_not_empty(n: int, what: str, description: str) -> None:
    if n == 0:
        raise InvalidValueError(
            expected(
                "--data",
                f"to hold at least one {what}",
                f"none in {description}",
                "Check the file.",
            )
        )


def _digits_lt(imbalance_ratio: float, seed: int) -> Labels:
    from weightlab.lab.digits import load_digits_lt

    digits = load_digits_lt(imbalance_ratio, seed=seed)
    return Labels(
        values=digits.y_train,
        class_names=digits.class_names,
        description=f"digits-lt training split (imbalance ratio {imbalance_ratio:g}, seed {seed})",
    )


def _not_applicable(option: str, data: str) -> InvalidValueError:
    where = {
        "--column": "a .csv or .parquet file",
        "--imbalance-ratio": "--data digits-lt",
        "--seed": "--data digits-lt",
    }[option]
    return InvalidValueError(
        expected(
            option, f"to be given only with {where}", f"it with --data {data}", f"Drop {option}."
        )
    )


def _load_npy(path: Path) -> np.ndarray[Any, Any]:
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as err:
        raise _unreadable(path, err) from None


def _read_npy(path: Path) -> np.ndarray[Any, Any]:
    values = _load_npy(path)
    if values.ndim != 1:
        raise InvalidValueError(
            expected(
                "--data",
                "to hold a 1-D array of labels",
                f"shape {values.shape} in {path.name}",
                "Save labels.ravel() for masks, or one label per sample.",
            )
        )
    return values


def _read_column(path: Path, column: str | None) -> tuple[np.ndarray[Any, Any], str]:
    frame = _read_table(path, lambda available: [_pick_column(path, available, column)])
    name = str(frame.columns[0])
    description = f"column {name!r} of {path.name}"
    _check_no_missing(frame[name], description)
    return frame[name].to_numpy(), description


def _read_table(path: Path, pick: Callable[[list[str]], list[str]]) -> Any:
    """The columns ``pick(all column names)`` of a .csv or .parquet file, as a DataFrame."""
    import pandas as pd

    parquet = path.suffix.lower() != ".csv"
    try:
        if parquet:
            try:
                import pyarrow.parquet as pq  # type: ignore[import-untyped]
            except ImportError:
                raise ImportError(
                    f"Reading {path.name} needs pyarrow, which is not installed. "
                    f"Install it with: {PARQUET_HINT}"
                ) from None
            available = [str(c) for c in pq.read_schema(path).names]
        else:
            available = [str(c) for c in pd.read_csv(path, nrows=0).columns]
        picked = pick(available)
        if parquet:
            return pd.read_parquet(path, columns=picked)
        return pd.read_csv(path, usecols=picked)[picked]
    except WeightlabError:
        raise
    except (OSError, ValueError) as err:  # pandas' and pyarrow's parse errors are ValueErrors
        raise _unreadable(path, err) from None


def _check_no_missing(series: Any, description: str) -> None:
    missing = int(series.isna().sum())
    if missing:
        raise InvalidValueError(
            expected(
                "--column",
                "to have no missing values",
                f"{missing} missing in {description}",
                "Drop or fill them first.",
            )
        )


def _check_indicators(values: np.ndarray[Any, Any], where: str, fix: str) -> None:
    """Refuse any value of one label other than 0 and 1 (booleans are fine)."""
    if values.dtype == np.bool_:
        return
    if np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating):
        bad = ~((values == 0) | (values == 1))
    else:  # text: every value is wrong; show the first that does not even read as 0 or 1
        bad = ~np.isin(values.astype(str), ("0", "1", "0.0", "1.0", "True", "False"))
        if not bad.any():
            bad = np.ones(values.shape, dtype=bool)
    if bad.any():
        value = values[int(np.argmax(bad))]
        shown = value.item() if isinstance(value, np.generic) else value
        raise InvalidValueError(
            expected(
                "--data",
                "to hold only 0 and 1 with --multilabel",
                f"{shown!r} in {where}",
                fix,
            )
        )


def _pick_column(path: Path, columns: list[str], column: str | None) -> str:
    if column is not None:
        if column in columns:
            return column
        raise InvalidValueError(
            expected(
                "--column",
                f"to be a column of {path.name} ({names(columns)})",
                repr(column),
                "Pick one of those columns.",
            )
        )
    if len(columns) == 1:
        return columns[0]
    for name in LABEL_COLUMNS:
        if name in columns:
            return name
    raise InvalidValueError(
        expected(
            "--column",
            f"to name the label column of {path.name} ({names(columns)})",
            f"none, and no column is named {names(LABEL_COLUMNS)}",
            "Pass --column NAME.",
        )
    )


def _unreadable(path: Path, err: Exception) -> InvalidValueError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return InvalidValueError(
        expected(
            "--data",
            f"to be a readable {path.suffix} file",
            f"{path.name}: {reason}",
            "Check the file.",
        )
    )


def _as_labels(values: np.ndarray[Any, Any], description: str) -> Labels:
    if values.dtype != np.bool_ and (
        np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)
    ):
        return Labels(values=values, class_names=None, description=description)
    text = values.astype(str)
    classes, codes = np.unique(text, return_inverse=True)
    return Labels(
        values=codes.astype(np.int64).reshape(-1),
        class_names=tuple(str(c) for c in classes),
        description=description,
    )
