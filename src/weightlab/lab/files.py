"""Read the user's data files: one reader for the lab and for ``weightlab weights``.

It opens CSV and Parquet tables (Parquet needs pyarrow; the message says how to
install it), ``.npy`` arrays of labels and ``.npz`` archives of features and
labels; it finds the target column, and it refuses missing values, non-numeric
features, unknown columns and unreadable files with one vocabulary:

* **target**: the column of a table that holds each row's label, its class
  (``target=`` in Python, ``--target COLUMN`` or ``--data-param target=COLUMN``
  for ``weightlab study``, ``--target COLUMN`` for ``weightlab weights``). Not
  named: a table's only column, else the first of :data:`TARGET_COLUMNS` the
  table has.
* **features**: the columns a model reads, numbers only (default: every column
  but the target).
* ``.npy``: labels only, one per sample (:mod:`weightlab.weights` counts them;
  a model would have nothing to read).
* ``.npz``: ``X`` (features, one row per sample) and ``y`` (labels), optionally
  ``input_shape`` (the shape of one example) and ``class_names`` (the names of
  the sorted distinct labels).

Messages name the arguments as the caller's :class:`Spelling` says: Python
keywords (``target``, ``features``, ``path``) or command-line flags
(``--target``, ``--data``). A table without a recognisable target column is
refused with a message that lists its columns, the recognised names and the fix.
:func:`renamed` keeps an old argument name working for one release, with a
:class:`DeprecationWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from weightlab.errors import (
    InvalidValueError,
    ShapeMismatchError,
    expected,
    names,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DATA_SUFFIXES",
    "LABEL_SUFFIXES",
    "PARQUET_HINT",
    "PYTHON",
    "TABLE_SUFFIXES",
    "TARGET_COLUMNS",
    "Examples",
    "FileLabels",
    "Spelling",
    "check_file",
    "check_no_missing",
    "check_not_empty",
    "deprecation_note",
    "read_array",
    "read_labels",
    "read_npz",
    "read_npz_examples",
    "read_table",
    "read_table_examples",
    "renamed",
    "suffix_text",
    "table_columns",
    "target_column",
]

#: Columns taken as the target column, in this order, when none is named.
TARGET_COLUMNS = ("target", "label", "y", "class")
#: Suffixes of tables (CSV, Parquet).
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
#: Suffixes of files that hold labels (what ``weightlab weights`` counts).
LABEL_SUFFIXES = (*TABLE_SUFFIXES, ".npy", ".npz")
#: Suffixes of files that hold features and labels (what the lab trains on).
DATA_SUFFIXES = (*TABLE_SUFFIXES, ".npz")
#: How to install what Parquet files need.
PARQUET_HINT = "pip install 'weightlab[parquet]'"

_T = TypeVar("_T")


@dataclass(frozen=True)
class Spelling:
    """How messages name the arguments of a reader: Python keywords or command-line flags.

    Attributes:
        data: the argument that names the file (``path``, ``--data``).
        target: the argument that names the target column(s) (``target``, ``--target``).
        features: the argument that names the feature columns.
        flags: the names are flags, given as ``--target COLUMN`` (not ``target=COLUMN``).
    """

    data: str = "path"
    target: str = "target"
    features: str = "features"
    flags: bool = False

    def given(self, name: str, value: str) -> str:
        """How a user gives ``name`` the value ``value``.

        Example:
            >>> PYTHON.given("target", "COLUMN"), Spelling(flags=True).given("--target", "COLUMN")
            ('target=COLUMN', '--target COLUMN')
        """
        return f"{name} {value}" if self.flags else f"{name}={value}"


#: The spelling of the Python API (:func:`weightlab.lab.data.load_data` and friends).
PYTHON = Spelling()


def deprecation_note(old: str, new: str) -> str:
    """The one sentence every renamed argument gets (warning text, or the CLI's note).

    Example:
        >>> deprecation_note("--column", "--target")
        '--column is deprecated and will be removed in the next release; use --target instead.'
    """
    return f"{old} is deprecated and will be removed in the next release; use {new} instead."


def renamed(
    new_value: _T | None, old_value: _T | None, *, new: str, old: str, stacklevel: int = 3
) -> _T | None:
    """The value of an argument that was renamed from ``old`` to ``new``.

    The old name still works: its value is used, with a :class:`DeprecationWarning`
    that names the new one (``stacklevel`` 3 points at the caller of the
    function that calls this).

    Raises:
        InvalidValueError: both names are given, with different values.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     renamed(None, "species", new="target", old="column")
        'species'
        >>> str(caught[0].message)
        'column= is deprecated and will be removed in the next release; use target= instead.'
    """
    if old_value is None:
        return new_value
    warnings.warn(deprecation_note(f"{old}=", f"{new}="), DeprecationWarning, stacklevel=stacklevel)
    if new_value is not None and new_value != old_value:
        raise InvalidValueError(
            expected(
                new,
                f"to be given once (its old name is {old})",
                f"{new}={new_value!r} and {old}={old_value!r}",
                f"Drop {old}.",
            )
        )
    return old_value


def suffix_text(suffixes: Sequence[str]) -> str:
    """``'.a, .b or .c'``.

    Example:
        >>> suffix_text(LABEL_SUFFIXES)
        '.csv, .parquet, .pq, .npy or .npz'
    """
    return ", ".join(suffixes[:-1]) + " or " + suffixes[-1] if len(suffixes) > 1 else suffixes[0]


def check_file(
    path: str | Path,
    suffixes: Sequence[str],
    *,
    spelling: Spelling = PYTHON,
    existing: str | None = None,
    holds: str = "data",
) -> Path:
    """``path`` as an existing file with one of ``suffixes`` (any case).

    Args:
        path: the path as the user gave it (messages show it so).
        suffixes: the suffixes accepted.
        spelling: how messages name the argument.
        existing: the expectation a missing file is told (default: to be an
            existing file of those suffixes).
        holds: what the file holds, for the fix of an unknown suffix.

    Raises:
        InvalidValueError: no such file, or another suffix (an ``.npy``, which
            holds labels only, where features are needed too: a message saying so).

    Example:
        >>> check_file("nope.csv", DATA_SUFFIXES)
        Traceback (most recent call last):
        ...
        weightlab.errors.InvalidValueError: Expected `path` to be an existing .csv, .parquet, \
.pq or .npz file, but got 'nope.csv', which is no such file. Check the path.
    """
    text = suffix_text(suffixes)
    p = Path(path)
    if not p.is_file():
        raise InvalidValueError(
            expected(
                spelling.data,
                existing or f"to be an existing {text} file",
                f"{str(path)!r}, which is no such file",
                "Check the path.",
            )
        )
    suffix = p.suffix.lower()
    if suffix in suffixes:
        return p
    if suffix == ".npy" and ".npz" in suffixes:
        raise InvalidValueError(
            expected(
                spelling.data,
                f"to be a {text} file, with features and labels",
                f"{str(path)!r}, an .npy file of labels alone",
                "Save the features with the labels: np.savez('data.npz', X=X, y=y), or a "
                "table with a target column (`weightlab weights` counts an .npy of labels).",
            )
        )
    raise InvalidValueError(
        expected(
            spelling.data,
            f"to be a {text} file",
            repr(str(path)),
            f"Save the {holds} in one of those formats.",
        )
    )


def check_not_empty(n: int, what: str, description: str, spelling: Spelling = PYTHON) -> None:
    """Refuse a file with no ``what`` (``"label"``, ``"sample"``) in it."""
    if n == 0:
        raise InvalidValueError(
            expected(
                spelling.data, f"to hold at least one {what}", f"none in {description}",
                "Check the file.",
            )
        )  # fmt: skip


def check_no_missing(series: Any, description: str, spelling: Spelling = PYTHON) -> None:
    """Refuse a target column (a pandas Series) with missing values."""
    missing = int(series.isna().sum())
    if missing:
        raise InvalidValueError(
            expected(
                spelling.target,
                "to have no missing values",
                f"{missing} missing in {description}",
                "Drop or fill them first.",
            )
        )


def _unreadable(path: Path, err: Exception, spelling: Spelling) -> InvalidValueError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return InvalidValueError(
        expected(
            spelling.data,
            f"to be a readable {path.suffix} file",
            f"{path.name}: {reason}",
            "Check the file.",
        )
    )


def _pyarrow_parquet(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError:
        raise ImportError(
            f"Reading {path.name} needs pyarrow, which is not installed. "
            f"Install it with: {PARQUET_HINT}"
        ) from None
    return pq


def table_columns(path: Path, *, spelling: Spelling = PYTHON) -> list[str]:
    r"""The column names of a CSV or Parquet file, read from its header (the Parquet schema) alone.

    A Parquet file's saved pandas index is not a column.

    Raises:
        InvalidValueError: an unreadable file (anything pandas or pyarrow cannot parse).
        ImportError: a Parquet file without pyarrow installed (the message says how
            to install it).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp(), "t.csv")
        >>> _ = path.write_text("a,b,label\n1,2,x\n")
        >>> table_columns(path)
        ['a', 'b', 'label']
    """
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            return [str(c) for c in pd.read_csv(path, nrows=0).columns]
        schema = _pyarrow_parquet(path).read_schema(path)
        meta = schema.pandas_metadata or {}
        index = {c for c in meta.get("index_columns", []) if isinstance(c, str)}
        return [str(c) for c in schema.names if c not in index]
    except (OSError, ValueError) as err:  # pandas' and pyarrow's parse errors are ValueErrors
        raise _unreadable(path, err, spelling) from None


def read_table(
    path: Path,
    pick: Callable[[list[str]], list[str]] | None = None,
    *,
    spelling: Spelling = PYTHON,
) -> pd.DataFrame:
    r"""The columns ``pick(every column name)`` of a CSV or Parquet file, in that order.

    Only the header (:func:`table_columns`) is read before ``pick`` chooses,
    and then only the chosen columns; ``pick`` may raise to refuse the table.
    A Parquet file's saved pandas index is not a column.

    Raises:
        InvalidValueError: an unreadable file (anything pandas or pyarrow cannot parse).
        ImportError: a Parquet file without pyarrow installed (the message says how
            to install it).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp(), "t.csv")
        >>> _ = path.write_text("a,b,label\n1,2,x\n3,4,y\n")
        >>> read_table(path, lambda columns: columns[::-1]).columns.tolist()
        ['label', 'b', 'a']
    """
    import pandas as pd

    available = table_columns(path, spelling=spelling)
    picked = available if pick is None else pick(available)
    whole = set(picked) == set(available)  # read as a whole, the way pandas reads it
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path) if whole else pd.read_csv(path, usecols=picked)
        else:
            frame = pd.read_parquet(path) if whole else pd.read_parquet(path, columns=picked)
        return frame[picked]
    except (OSError, ValueError) as err:  # pandas' and pyarrow's parse errors are ValueErrors
        raise _unreadable(path, err, spelling) from None


def target_column(
    columns: Sequence[str], target: str | None, *, where: str, spelling: Spelling = PYTHON
) -> str:
    """The target column among ``columns``: ``target``, or else the only column or a usual name.

    Args:
        columns: the table's columns.
        target: the name given, or ``None`` to find it: the only column, else the
            first of :data:`TARGET_COLUMNS` the table has.
        where: the file's name, for messages.
        spelling: how messages name the argument.

    Raises:
        InvalidValueError: ``target`` is not a column, or no column is found (both
            messages list the columns; the second, the recognised names and the fix).

    Example:
        >>> target_column(["x", "y"], None, where="t.csv")
        'y'
        >>> target_column(["x", "kind"], None, where="t.csv")
        Traceback (most recent call last):
        ...
        weightlab.errors.InvalidValueError: Expected `target` to name the target column of t.csv \
(its columns: 'x', 'kind'), but got none, and no column has a recognised target name ('target', \
'label', 'y', 'class'). Pick one with target=COLUMN.
    """
    if target is not None:
        if target in columns:
            return target
        raise InvalidValueError(
            expected(
                spelling.target,
                f"to be a column of {where} ({names(columns)})",
                repr(target),
                "Pick one of those columns.",
            )
        )
    if len(columns) == 1:
        return columns[0]
    for name in TARGET_COLUMNS:
        if name in columns:
            return name
    raise InvalidValueError(
        expected(
            spelling.target,
            f"to name the target column of {where} (its columns: {names(columns)})",
            f"none, and no column has a recognised target name ({names(TARGET_COLUMNS)})",
            f"Pick one with {spelling.given(spelling.target, 'COLUMN')}.",
        )
    )


def _feature_columns(
    columns: list[str],
    target: str,
    features: Sequence[str] | str | None,
    *,
    where: str,
    spelling: Spelling,
) -> list[str]:
    if features is None:
        chosen = [c for c in columns if c != target]
    else:  # one name is one column, not a sequence of letters
        chosen = [features] if isinstance(features, str) else [str(c) for c in features]
    unknown = [c for c in chosen if c not in columns]
    if unknown or not chosen:
        raise InvalidValueError(
            expected(
                spelling.features,
                f"to name at least one column of {where}",
                repr(unknown or chosen),
                f"Pick from {names(columns)}.",
            )
        )
    if target in chosen:
        raise InvalidValueError(
            expected(
                spelling.features,
                f"to leave out the target column {target!r}",
                names(chosen),
                f"Drop {target!r} from {spelling.features}: a model must not read its labels.",
            )
        )
    return chosen


def _check_numeric(frame: Any, columns: list[str], spelling: Spelling) -> None:
    import pandas as pd

    bad = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])
           or pd.api.types.is_bool_dtype(frame[c])]  # fmt: skip
    if bad:
        raise InvalidValueError(
            expected(
                spelling.features,
                "to be numeric columns",
                f"non-numeric column(s) {names(map(str, bad))} "
                f"(dtype {names(str(frame[c].dtype) for c in bad)})",
                "Encode them as numbers (e.g. one-hot) or leave them out with "
                f"{spelling.given(spelling.features, '[...]')}.",
            )
        )


def _check_finite(x: npt.NDArray[np.float64], argument: str, where: str, fix: str) -> None:
    if not np.isfinite(x).all():
        bad = ~np.isfinite(x)
        raise InvalidValueError(
            expected(
                argument,
                "to have no missing or infinite values",
                f"{int(bad.sum())} in {where}",
                fix,
            )
        )


def read_array(path: Path, *, spelling: Spelling = PYTHON) -> npt.NDArray[Any]:
    """The array of an ``.npy`` file (no pickled objects).

    Raises:
        InvalidValueError: an unreadable file.
    """
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as err:
        raise _unreadable(path, err, spelling) from None


def read_npz(
    path: Path, wanted: Sequence[str], *, spelling: Spelling = PYTHON
) -> tuple[dict[str, npt.NDArray[Any]], list[str]]:
    """The arrays ``wanted`` that an ``.npz`` file holds, and the names of all it holds.

    Raises:
        InvalidValueError: an unreadable file (pickled objects included).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp(), "d.npz")
        >>> np.savez(path, X=np.zeros((2, 3)), y=np.array([0, 1]))
        >>> arrays, held = read_npz(path, ["y", "class_names"])
        >>> list(arrays), held
        (['y'], ['X', 'y'])
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            held = sorted(archive.files)
            return {k: np.asarray(archive[k]) for k in wanted if k in held}, held
    except (OSError, ValueError) as err:  # a pickled array is a ValueError here
        raise _unreadable(path, err, spelling) from None


def _fitting_names(
    saved: npt.NDArray[Any] | None, values: npt.NDArray[Any]
) -> tuple[str, ...] | None:
    """Saved class names, when there is one per distinct label (else ``None``)."""
    if saved is None:
        return None
    class_names = tuple(str(n) for n in saved.reshape(-1).tolist())
    return class_names if len(class_names) == len(np.unique(values)) else None


@dataclass(frozen=True)
class FileLabels:
    """One label per sample, as a file stores them.

    Attributes:
        values: shape ``(N,)``: numbers, strings or booleans, as read.
        class_names: names of the sorted distinct labels, when an ``.npz`` saves
            one per distinct label (``class_names``); ``None`` otherwise.
        description: where the labels come from (``"column 'y' of t.csv"``).
    """

    values: npt.NDArray[Any]
    class_names: tuple[str, ...] | None
    description: str


def read_labels(
    path: str | Path, *, target: str | None = None, spelling: Spelling = PYTHON
) -> FileLabels:
    r"""Read the labels of a file: a table's target column, a 1-D ``.npy``, or an ``.npz``'s ``y``.

    Args:
        path: a ``.csv``, ``.parquet``, ``.pq``, ``.npy`` or ``.npz`` file.
        target: the target column of a table (see :func:`target_column`); refused
            for arrays.
        spelling: how messages name the arguments.

    Raises:
        InvalidValueError: a missing file, an unknown suffix, an unknown or
            unnamed target column, missing values, ``target`` with an array, an
            array that is not 1-D, an ``.npz`` without ``y``, an unreadable
            file, or no labels at all.
        ImportError: a Parquet file without pyarrow installed.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp(), "t.csv")
        >>> _ = path.write_text("x,label\n0.5,cat\n0.1,dog\n")
        >>> got = read_labels(path)
        >>> got.values.tolist(), got.class_names, got.description
        (['cat', 'dog'], None, "column 'label' of t.csv")
    """
    shown = str(path)
    path = check_file(path, LABEL_SUFFIXES, spelling=spelling, holds="labels")
    suffix = path.suffix.lower()
    saved: npt.NDArray[Any] | None = None
    if suffix in TABLE_SUFFIXES:
        frame = read_table(
            path,
            lambda columns: [target_column(columns, target, where=path.name, spelling=spelling)],
            spelling=spelling,
        )
        name = str(frame.columns[0])
        description = f"column {name!r} of {path.name}"
        check_no_missing(frame[name], description, spelling)
        values = frame[name].to_numpy()
    else:
        if target is not None:
            raise InvalidValueError(
                expected(
                    spelling.target,
                    "to be given only with a .csv or .parquet file",
                    f"it with {spelling.given(spelling.data, shown)}",
                    f"Drop {spelling.target}.",
                )
            )
        if suffix == ".npy":
            values, description = read_array(path, spelling=spelling), path.name
        else:
            arrays, held = read_npz(path, ("y", "class_names"), spelling=spelling)
            if "y" not in arrays:
                raise InvalidValueError(
                    expected(
                        spelling.data,
                        "to be an .npz with an array 'y' of labels",
                        f"arrays {names(held)}",
                        "Save it with np.savez(path, X=X, y=y).",
                    )
                )
            values, saved = arrays["y"], arrays.get("class_names")
            description = f"array 'y' of {path.name}"
        if values.ndim != 1:
            raise InvalidValueError(
                expected(
                    spelling.data,
                    "to hold a 1-D array of labels",
                    f"shape {values.shape} in {description}",
                    "Save labels.ravel() for masks, or one label per sample.",
                )
            )
    check_not_empty(len(values), "label", description, spelling)
    return FileLabels(values, _fitting_names(saved, values), description)


@dataclass(frozen=True)
class Examples:
    """Features and labels read from a file, checked, not yet split.

    Attributes:
        x: features, float64, shape ``(N, prod(input_shape))``, all finite.
        y: one label per row, shape ``(N,)``, as stored (numbers, strings, booleans).
        input_shape: the shape of one example.
        class_names: names of the sorted distinct labels saved in an ``.npz``
            (one per distinct label), else ``None``.
        description: where the examples come from, for messages (the file's name).
    """

    x: npt.NDArray[np.float64]
    y: npt.NDArray[Any]
    input_shape: tuple[int, ...]
    class_names: tuple[str, ...] | None
    description: str


def read_table_examples(
    path: str | Path,
    *,
    target: str | None = None,
    features: Sequence[str] | str | None = None,
    spelling: Spelling = PYTHON,
) -> Examples:
    r"""Read a CSV or Parquet file: its target column and numeric feature columns.

    Args:
        path: a ``.csv``, ``.parquet`` or ``.pq`` file.
        target: the target column (see :func:`target_column`).
        features: the feature columns, in this order (one name: one column);
            default every other column, in the file's order.
        spelling: how messages name the arguments.

    Raises:
        InvalidValueError: a missing file, an unknown suffix, an unknown or
            unnamed target column, no or unknown feature columns, the target among
            the features, a non-numeric feature, missing labels, a missing or
            infinite feature value, no rows, or an unreadable file.
        ImportError: a Parquet file without pyarrow installed.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp(), "t.csv")
        >>> _ = path.write_text("a,b,species\n1,2,cat\n3,4,dog\n")
        >>> got = read_table_examples(path, target="species", features=["b"])
        >>> got.x.tolist(), got.y.tolist(), got.input_shape
        ([[2.0], [4.0]], ['cat', 'dog'], (1,))
    """
    path = check_file(path, TABLE_SUFFIXES, spelling=spelling)
    chosen: dict[str, Any] = {}

    def pick(columns: list[str]) -> list[str]:
        chosen["target"] = target_column(columns, target, where=path.name, spelling=spelling)
        chosen["features"] = _feature_columns(
            columns, chosen["target"], features, where=path.name, spelling=spelling
        )
        return [chosen["target"], *chosen["features"]]

    frame = read_table(path, pick, spelling=spelling)
    name, cols = chosen["target"], chosen["features"]
    where = f"column {name!r} of {path.name}"
    check_not_empty(len(frame), "label", where, spelling)
    _check_numeric(frame, cols, spelling)
    check_no_missing(frame[name], where, spelling)
    x = frame[cols].to_numpy(dtype=np.float64)
    bad = [c for c, finite in zip(cols, np.isfinite(x).all(axis=0), strict=True) if not finite]
    _check_finite(
        x, spelling.features, f"column(s) {names(bad)} of {path.name}",
        "Impute or drop those rows first.",
    )  # fmt: skip
    return Examples(x, frame[name].to_numpy(), (len(cols),), None, path.name)


def read_npz_examples(
    path: str | Path,
    *,
    input_shape: Sequence[int] | None = None,
    spelling: Spelling = PYTHON,
) -> Examples:
    """Read an ``.npz`` of ``X`` (rows) and ``y`` (labels), and the shape of one example.

    The shape comes from ``input_shape``, else from an ``input_shape`` array
    saved in the file, else from ``X.shape[1:]``; the rows are flattened to
    ``(N, prod(shape))``. A saved ``class_names`` array names the sorted
    distinct labels (kept when it has one name per distinct label).

    Raises:
        InvalidValueError: a missing file, another suffix, ``X`` or ``y``
            missing, a non-numeric or non-finite ``X``, missing labels, no rows,
            or an unreadable file.
        ShapeMismatchError: ``y`` not 1-D with one label per row, or a shape
            that does not hold one row of ``X``.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp(), "d.npz")
        >>> np.savez(path, X=np.zeros((4, 2, 3)), y=np.array([0, 1, 0, 1]))
        >>> got = read_npz_examples(path)
        >>> got.x.shape, got.input_shape
        ((4, 6), (2, 3))
    """
    path = check_file(path, (".npz",), spelling=spelling)
    arrays, held = read_npz(path, ("X", "y", "input_shape", "class_names"), spelling=spelling)
    if not {"X", "y"} <= set(arrays):
        raise InvalidValueError(
            expected(
                spelling.data,
                "to be an .npz with arrays 'X' and 'y'",
                f"arrays {names(held)}",
                "Save it with np.savez(path, X=X, y=y, input_shape=(1, 8, 8)).",
            )
        )
    x, labels = arrays["X"], arrays["y"]
    if input_shape is None and "input_shape" in arrays:
        input_shape = tuple(int(s) for s in arrays["input_shape"].tolist())
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise InvalidValueError(
            expected("X", "to be a real numeric array", f"dtype {x.dtype}", "Save numbers.")
        )
    shape = tuple(int(s) for s in (input_shape if input_shape is not None else x.shape[1:]))
    if labels.ndim != 1 or len(labels) != len(x) or not shape:
        raise ShapeMismatchError(
            expected(
                "y",
                f"to be 1-D with one label per row of X ({len(x)})",
                f"shape {labels.shape}",
                "Save one label per example.",
            )
        )
    check_not_empty(len(labels), "label", f"array 'y' of {path.name}", spelling)
    row = int(np.prod(x.shape[1:], dtype=np.int64))
    if row != int(np.prod(shape, dtype=np.int64)):
        raise ShapeMismatchError(
            expected(
                "input_shape",
                f"to hold the {row} values of one row of X",
                repr(shape),
                "Declare the shape of one example, e.g. (1, 8, 8) or (8, 8).",
            )
        )
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise InvalidValueError(
            expected(
                "y",
                "to have no missing values",
                f"{int(np.isnan(labels).sum())} NaN in array 'y' of {path.name}",
                "Drop or fill them first.",
            )
        )
    flat = x.reshape(len(x), -1).astype(np.float64)
    _check_finite(flat, "X", f"array 'X' of {path.name}", "Impute or drop those rows.")
    class_names = _fitting_names(arrays.get("class_names"), labels)
    return Examples(flat, labels, shape, class_names, path.name)
