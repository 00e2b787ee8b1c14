"""Read the class labels of a data set named on the command line (``--data``).

Sources: the built-in ``digits-lt`` (its long-tailed training split), or a file
read by the lab's one reader, :mod:`weightlab.lab.files`: the target column of a
``.csv`` or ``.parquet`` file (``--target``), a 1-D ``.npy`` array, or the ``y``
array of an ``.npz``. Integer labels are class indices; any other labels
(strings, booleans) are class names, mapped to indices in sorted order and kept
as names (an ``.npz``'s ``class_names``, one per distinct label, name them).

Multi-label 0/1 targets (:func:`read_multilabel`): an ``(N, L)`` ``.npy`` array
or ``.npz`` ``y``, or 0/1 target columns of a ``.csv`` or ``.parquet`` file.
This module adds what only the command line means: the built-in name, the
``--multilabel`` checks and the flags' names in messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weightlab.errors import InvalidValueError, expected, names
from weightlab.lab import files

__all__ = [
    "BUILTIN",
    "LABEL_COLUMNS",
    "SUFFIXES",
    "Labels",
    "MultiLabels",
    "read_labels",
    "read_multilabel",
    "spelling",
]

#: Built-in data sets ``--data`` accepts by name.
BUILTIN = ("digits-lt",)
#: File suffixes ``--data`` accepts.
SUFFIXES = files.LABEL_SUFFIXES
#: Columns taken as the target column, in this order, when ``--target`` is not given
#: (:data:`weightlab.lab.files.TARGET_COLUMNS`).
LABEL_COLUMNS = files.TARGET_COLUMNS

_SUFFIX_TEXT = files.suffix_text(SUFFIXES)


def spelling(target: str = "--target") -> files.Spelling:
    """How messages name the options of ``weightlab weights``.

    Args:
        target: the target option as the user typed it (``--target``, or the
            deprecated ``--column``).

    Example:
        >>> spelling().given("--target", "COLUMN")
        '--target COLUMN'
    """
    return files.Spelling(data="--data", target=target, features="--features", flags=True)


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
    target: str | None = None,
    imbalance_ratio: float | None = None,
    seed: int | None = None,
    option: str = "--target",
    column: str | None = None,
) -> Labels:
    """Read the labels of ``data``: ``'digits-lt'`` or a .csv, .parquet, .npy or .npz file.

    Args:
        data: the built-in name or the file path.
        target: the target column of a table; by default the only column, or
            the first of :data:`LABEL_COLUMNS` the table has (else the message
            lists the table's columns).
        imbalance_ratio: ``digits-lt`` only: head count / tail count (default 10).
        seed: ``digits-lt`` only: the seed of its split (default 0).
        option: the target option's name in messages (``--target``, or the
            deprecated ``--column`` when the user typed that).
        column: deprecated old name of ``target`` (a :class:`DeprecationWarning`).

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
    target = files.renamed(target, column, new="target", old="column")
    if data in BUILTIN:
        if target is not None:
            raise _not_applicable(option, data)
        return _digits_lt(10.0 if imbalance_ratio is None else imbalance_ratio, seed or 0)
    _label_file(
        data, imbalance_ratio, seed, f"to be {names(BUILTIN)} or an existing {_SUFFIX_TEXT} file"
    )
    got = files.read_labels(data, target=target, spelling=spelling(option))
    return _as_labels(got.values, got.description, got.class_names)


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
    targets: Sequence[str] = (),
    imbalance_ratio: float | None = None,
    seed: int | None = None,
    option: str = "--target",
    columns: Sequence[str] | None = None,
) -> MultiLabels:
    """Read multi-label 0/1 targets: an ``(N, L)`` .npy or .npz array, or 0/1 columns of a table.

    Args:
        data: a path to a .csv, .parquet, .npy or .npz file (the built-in data
            set is single-label and refused).
        targets: the 0/1 target columns of a table, in this order; by default every
            column.
        imbalance_ratio: not applicable to a file (refused when given).
        seed: not applicable to a file (refused when given).
        option: the target option's name in messages.
        columns: deprecated old name of ``targets`` (a :class:`DeprecationWarning`).

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
    targets = files.renamed(tuple(targets) or None, columns, new="targets", old="columns") or ()
    spelled = spelling(option)
    if data in BUILTIN:
        raise InvalidValueError(
            expected(
                "--data",
                f"to be a {_SUFFIX_TEXT} file of 0/1 labels with --multilabel",
                f"{data!r}, which is single-label (one class per sample)",
                "Pass --data labels.npy (an (N, L) 0/1 array) or a table of 0/1 target columns, "
                "or drop --multilabel.",
            )
        )
    path = _label_file(
        data, imbalance_ratio, seed, f"to be an existing {_SUFFIX_TEXT} file with --multilabel"
    )
    if path.suffix.lower() in (".npy", ".npz"):
        if targets:
            raise _not_applicable(option, data)
        values, description = _read_2d(path, spelled)
        label_names = tuple(str(j) for j in range(values.shape[1]))
        fix = "Save 0/1 (or boolean) labels, or drop --multilabel for class indices."
        for j in range(values.shape[1]):
            _check_indicators(values[:, j], f"label {j} of {description}", fix)
    else:

        def pick(available: list[str]) -> list[str]:
            chosen = [files.target_column(available, c, where=path.name, spelling=spelled)
                      for c in targets]  # fmt: skip
            return chosen or available

        frame = files.read_table(path, pick, spelling=spelled)
        label_names = tuple(str(c) for c in frame.columns)
        fix = (
            f"Name the 0/1 target columns with {option} (repeat it), or drop --multilabel for "
            "class indices."
        )
        for name in label_names:
            where = f"column {name!r} of {path.name}"
            files.check_no_missing(frame[name], where, spelled)
            _check_indicators(frame[name].to_numpy(), where, fix)
        values = frame.to_numpy()
    files.check_not_empty(values.shape[0], "sample", path.name, spelled)
    return MultiLabels(values.astype(np.int8), label_names, path.name)


def _read_2d(path: Path, spelled: files.Spelling) -> tuple[np.ndarray[Any, Any], str]:
    """The ``(N, L)`` array of an .npy, or the ``y`` of an .npz, and its description."""
    if path.suffix.lower() == ".npy":
        values, description = files.read_array(path, spelling=spelled), path.name
    else:
        arrays, held = files.read_npz(path, ("y",), spelling=spelled)
        if "y" not in arrays:
            raise InvalidValueError(
                expected(
                    "--data",
                    "to be an .npz with an array 'y' of 0/1 labels with --multilabel",
                    f"arrays {names(held)}",
                    "Save it with np.savez(path, y=y), y of shape (N, L).",
                )
            )
        values, description = arrays["y"], f"array 'y' of {path.name}"
    if values.ndim != 2 or values.shape[1] == 0:
        raise InvalidValueError(
            expected(
                "--data",
                "to hold a 2-D (N, L) array of 0/1 labels with --multilabel",
                f"shape {values.shape} in {description}",
                "Save one row of 0/1 labels per sample, or drop --multilabel for a 1-D "
                "array of class indices.",
            )
        )
    return values, description


def _label_file(data: str, imbalance_ratio: float | None, seed: int | None, existing: str) -> Path:
    """``data`` as the path of an existing label file with a known suffix.

    ``existing`` is the expectation a missing file is told.
    """
    for option, value in (("--imbalance-ratio", imbalance_ratio), ("--seed", seed)):
        if value is not None:
            raise _not_applicable(option, data)
    return files.check_file(data, SUFFIXES, spelling=spelling(), existing=existing, holds="labels")


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
        "--imbalance-ratio": "--data digits-lt",
        "--seed": "--data digits-lt",
    }.get(option, "a .csv or .parquet file")  # the target option, however it is spelled
    return InvalidValueError(
        expected(
            option, f"to be given only with {where}", f"it with --data {data}", f"Drop {option}."
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


def _as_labels(
    values: np.ndarray[Any, Any], description: str, class_names: tuple[str, ...] | None = None
) -> Labels:
    if class_names is not None:  # saved names of the sorted distinct labels
        _, codes = np.unique(values, return_inverse=True)
        return Labels(codes.astype(np.int64).reshape(-1), class_names, description)
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
