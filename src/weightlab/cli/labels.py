"""Read the class labels of a data set named on the command line (``--data``).

Sources: the built-in ``digits-lt`` (its long-tailed training split), a label
column of a ``.csv`` or ``.parquet`` file, or a 1-D ``.npy`` array. Integer
labels are class indices; any other labels (strings, booleans) are class names,
mapped to indices in sorted order and kept as names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weightlab.errors import InvalidValueError, WeightlabError, expected, names

__all__ = ["BUILTIN", "LABEL_COLUMNS", "SUFFIXES", "Labels", "read_labels"]

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
    for option, value in (("--imbalance-ratio", imbalance_ratio), ("--seed", seed)):
        if value is not None:
            raise _not_applicable(option, data)
    path = Path(data)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InvalidValueError(
            expected(
                "--data",
                f"to be {names(BUILTIN)} or an existing {_SUFFIX_TEXT} file",
                f"{data!r}, which is no such file",
                "Check the path.",
            )
        )
    if suffix not in SUFFIXES:
        raise InvalidValueError(
            expected(
                "--data",
                f"to be a {_SUFFIX_TEXT} file",
                repr(data),
                "Save the labels in one of those formats.",
            )
        )
    if suffix == ".npy":
        if column is not None:
            raise _not_applicable("--column", data)
        values, description = _read_npy(path), path.name
    else:
        values, description = _read_column(path, column)
    if values.shape[0] == 0:
        raise InvalidValueError(
            expected(
                "--data", "to hold at least one label", f"none in {description}", "Check the file."
            )
        )
    return _as_labels(values, description)


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


def _read_npy(path: Path) -> np.ndarray[Any, Any]:
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise _unreadable(path, err) from None
    if values.ndim != 1:
        raise InvalidValueError(
            expected(
                "--data",
                "to hold a 1-D array of labels",
                f"shape {values.shape} in {path.name}",
                "Save labels.ravel() for masks, or one label per sample.",
            )
        )
    return np.asarray(values)


def _read_column(path: Path, column: str | None) -> tuple[np.ndarray[Any, Any], str]:
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
            columns = [str(c) for c in pq.read_schema(path).names]
        else:
            columns = [str(c) for c in pd.read_csv(path, nrows=0).columns]
        column = _pick_column(path, columns, column)
        if parquet:
            series = pd.read_parquet(path, columns=[column])[column]
        else:
            series = pd.read_csv(path, usecols=[column])[column]
    except WeightlabError:
        raise
    except (OSError, ValueError) as err:  # pandas' and pyarrow's parse errors are ValueErrors
        raise _unreadable(path, err) from None
    description = f"column {column!r} of {path.name}"
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
    return series.to_numpy(), description


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
