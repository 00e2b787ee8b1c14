"""weightlab.lab.files: the one reader of label and feature files, and every input it refuses."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from weightlab.errors import InvalidValueError, ShapeMismatchError
from weightlab.lab import files
from weightlab.lab.files import (
    DATA_SUFFIXES,
    LABEL_SUFFIXES,
    PYTHON,
    TARGET_COLUMNS,
    Spelling,
    check_file,
    deprecation_note,
    read_labels,
    read_npz_examples,
    read_table,
    read_table_examples,
    renamed,
    table_columns,
    target_column,
)

FLAGS = Spelling(data="--data", target="--target", features="--features", flags=True)


def raises(message: str, error: type[Exception] = InvalidValueError) -> Any:
    """Expect exactly ``message``."""
    return pytest.raises(error, match="^" + re.escape(message) + "$")


# -- vocabulary --------------------------------------------------------------------------


def test_vocabulary_constants() -> None:
    assert TARGET_COLUMNS == ("target", "label", "y", "class")
    assert LABEL_SUFFIXES == (".csv", ".parquet", ".pq", ".npy", ".npz")
    assert DATA_SUFFIXES == (".csv", ".parquet", ".pq", ".npz")
    assert not hasattr(files, "RENAMED")  # target= is the name; nothing of the API is renamed
    assert not hasattr(files, "LABEL_COLUMNS") and not hasattr(files, "label_column")
    assert PYTHON == Spelling("path", "target", "features", False)
    assert FLAGS.given("--target", "COLUMN") == "--target COLUMN"
    assert PYTHON.given("target", "COLUMN") == "target=COLUMN"


def test_renamed_warns_and_refuses_two_different_values() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert renamed("a", None, new="target", old="column") == "a"  # no warning
        assert renamed(None, None, new="target", old="column") is None
    with pytest.warns(DeprecationWarning) as caught:
        assert renamed(None, "a", new="target", old="column") == "a"
        assert renamed("a", "a", new="target", old="column") == "a"
    assert [str(w.message) for w in caught] == [
        "column= is deprecated and will be removed in the next release; use target= instead."
    ] * 2

    def api(target: str | None = None, column: str | None = None) -> str | None:
        return renamed(target, column, new="target", old="column")

    with pytest.warns(DeprecationWarning) as caught:
        api(column="a")
    assert caught[0].filename == __file__  # the warning points at the API's caller
    with (
        pytest.warns(DeprecationWarning),
        raises(
            "Expected `target` to be given once (its old name is column), but got target='a' and "
            "column='b'. Drop column."
        ),
    ):
        renamed("a", "b", new="target", old="column")
    assert deprecation_note("--column", "--target") == (
        "--column is deprecated and will be removed in the next release; use --target instead."
    )


# -- check_file --------------------------------------------------------------------------


def test_check_file(tmp_path: Path) -> None:
    upper = tmp_path / "T.CSV"
    upper.write_text("a\n1\n")
    assert check_file(str(upper), DATA_SUFFIXES) == upper  # suffixes in any case
    missing = str(tmp_path / "none.csv")
    with raises(
        f"Expected `path` to be an existing .csv, .parquet, .pq or .npz file, but got "
        f"{missing!r}, which is no such file. Check the path."
    ):
        check_file(missing, DATA_SUFFIXES)
    with raises(
        f"Expected `--data` to be there, but got {missing!r}, which is no such file. Check the "
        "path."
    ):
        check_file(missing, DATA_SUFFIXES, spelling=FLAGS, existing="to be there")
    txt = tmp_path / "t.txt"
    txt.write_text("1\n")
    with raises(
        f"Expected `path` to be a .csv, .parquet, .pq, .npy or .npz file, but got {str(txt)!r}. "
        "Save the labels in one of those formats."
    ):
        check_file(txt, LABEL_SUFFIXES, holds="labels")
    npy = tmp_path / "y.npy"
    np.save(npy, np.arange(3))
    assert check_file(npy, LABEL_SUFFIXES) == npy
    with raises(
        f"Expected `path` to be a .csv, .parquet, .pq or .npz file, with features and labels, but "
        f"got {str(npy)!r}, an .npy file of labels alone. Save the features with the labels: "
        "np.savez('data.npz', X=X, y=y), or a table with a target column (`weightlab weights` "
        "counts an .npy of labels)."
    ):
        check_file(npy, DATA_SUFFIXES)


# -- tables ------------------------------------------------------------------------------


def test_read_table_reads_the_picked_columns_in_order(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    pd.DataFrame({"a": [1, 2], "b": [3.5, 4.5], "c": ["x", "y"]}).to_csv(csv, index=False)
    seen: list[list[str]] = []

    def pick(columns: list[str]) -> list[str]:
        seen.append(columns)
        return ["c", "a"]

    frame = read_table(csv, pick)
    assert seen == [["a", "b", "c"]] and frame.columns.tolist() == ["c", "a"]
    assert frame["a"].tolist() == [1, 2]
    assert read_table(csv).columns.tolist() == ["a", "b", "c"]
    pq = tmp_path / "t.parquet"
    pd.DataFrame({"a": [1, 2, 3], "b": [0, 1, 0]}).iloc[1:].to_parquet(pq)  # saved index
    assert read_table(pq).columns.tolist() == ["a", "b"]
    assert read_table(pq, lambda columns: columns[::-1])["a"].tolist() == [2, 3]


def test_read_table_refuses_unreadable_files(tmp_path: Path) -> None:
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with raises("Expected `path` to be a readable .csv file, but got e.csv: No columns to parse "
                "from file. Check the file."):  # fmt: skip
        read_table(empty)
    broken = tmp_path / "b.parquet"
    broken.write_text("not parquet")
    with pytest.raises(
        InvalidValueError, match=r"^Expected `--data` to be a readable \.parquet file, but got b\."
    ):
        read_table(broken, spelling=FLAGS)


def test_read_table_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "y.pq"
    pd.DataFrame({"y": [0, 1]}).to_parquet(path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with raises(
        "Reading y.pq needs pyarrow, which is not installed. Install it with: "
        "pip install 'weightlab[parquet]'",
        ImportError,
    ):
        read_labels(path)


def test_target_column() -> None:
    assert target_column(["x", "label", "target"], None, where="t.csv") == "target"  # list order
    assert target_column(["class", "y"], None, where="t.csv") == "y"
    assert target_column(["only"], None, where="t.csv") == "only"
    assert target_column(["a", "b"], "b", where="t.csv") == "b"
    with raises(
        "Expected `--target` to be a column of t.csv ('a', 'b'), but got 'c'. Pick one of those "
        "columns."
    ):
        target_column(["a", "b"], "c", where="t.csv", spelling=FLAGS)
    with raises(
        "Expected `--target` to name the target column of t.csv (its columns: 'a', 'b'), but got "
        "none, and no column has a recognised target name ('target', 'label', 'y', 'class'). "
        "Pick one with --target COLUMN."
    ):
        target_column(["a", "b"], None, where="t.csv", spelling=FLAGS)
    with raises(
        "Expected `target` to name the target column of t.csv (its columns: 'a', 'b'), but got "
        "none, and no column has a recognised target name ('target', 'label', 'y', 'class'). "
        "Pick one with target=COLUMN."
    ):
        target_column(["a", "b"], None, where="t.csv")


def test_table_columns_reads_the_header_alone(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,kind\n1,2,x\n3,oops\n")  # a short row further down: not read
    assert table_columns(csv) == ["a", "b", "kind"]
    pq = tmp_path / "t.parquet"
    pd.DataFrame({"a": [1, 2, 3], "kind": [0, 1, 0]}).iloc[1:].to_parquet(pq)  # saved index
    assert table_columns(pq) == ["a", "kind"]
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with raises("Expected `--data` to be a readable .csv file, but got e.csv: No columns to parse "
                "from file. Check the file."):  # fmt: skip
        table_columns(empty, spelling=FLAGS)


# -- labels ------------------------------------------------------------------------------


def test_read_labels_from_every_format(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    pd.DataFrame({"x": [1, 2, 3], "kind": ["b", "a", "b"]}).to_csv(csv, index=False)
    got = read_labels(csv, target="kind")
    assert got.values.tolist() == ["b", "a", "b"] and got.class_names is None
    assert got.description == "column 'kind' of t.csv"
    npy = tmp_path / "y.npy"
    np.save(npy, np.array([2, 0, 2]))
    got = read_labels(npy)
    assert got.values.tolist() == [2, 0, 2] and got.description == "y.npy"
    npz = tmp_path / "d.npz"
    np.savez(npz, X=np.zeros((3, 1)), y=np.array([5, 1, 5]), class_names=["one", "five"])
    got = read_labels(npz)
    assert got.values.tolist() == [5, 1, 5] and got.class_names == ("one", "five")
    assert got.description == "array 'y' of d.npz"
    np.savez(npz, y=np.array([5, 1, 5]), class_names=["one", "five", "six"])
    assert read_labels(npz).class_names is None  # not one name per distinct label


def test_read_labels_refusals(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("y,x\ncat,1\n,2\n")
    with raises(
        "Expected `target` to have no missing values, but got 1 missing in column 'y' of t.csv. "
        "Drop or fill them first."
    ):
        read_labels(csv)
    csv.write_text("y\n")
    with raises(
        "Expected `path` to hold at least one label, but got none in column 'y' of t.csv. Check "
        "the file."
    ):
        read_labels(csv)
    npy = tmp_path / "y.npy"
    np.save(npy, np.zeros((2, 2)))
    with raises(
        "Expected `path` to hold a 1-D array of labels, but got shape (2, 2) in y.npy. Save "
        "labels.ravel() for masks, or one label per sample."
    ):
        read_labels(npy)
    with raises(
        f"Expected `target` to be given only with a .csv or .parquet file, but got it with "
        f"path={npy}. Drop target."
    ):
        read_labels(str(npy), target="y")
    np.save(npy, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(
        InvalidValueError, match=r"^Expected `path` to be a readable \.npy file, but got y\.npy: "
    ):
        read_labels(npy)
    npz = tmp_path / "d.npz"
    np.savez(npz, X=np.zeros(2))
    with raises(
        "Expected `--data` to be an .npz with an array 'y' of labels, but got arrays 'X'. Save it "
        "with np.savez(path, X=X, y=y)."
    ):
        read_labels(npz, spelling=FLAGS)
    np.savez(npz, y=np.zeros((0,)))
    with raises(
        "Expected `path` to hold at least one label, but got none in array 'y' of d.npz. Check "
        "the file."
    ):
        read_labels(npz)


# -- tables of features and labels -------------------------------------------------------


def _table(tmp_path: Path, **columns: object) -> Path:
    path = tmp_path / "t.csv"
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def test_read_table_examples(tmp_path: Path) -> None:
    path = _table(tmp_path, a=[1, 2, 3], b=[0.5, 1.5, 2.5], label=["x", "y", "x"])
    got = read_table_examples(path)
    assert got.x.dtype == np.float64 and got.x.tolist() == [[1, 0.5], [2, 1.5], [3, 2.5]]
    assert got.y.tolist() == ["x", "y", "x"] and got.input_shape == (2,)
    assert got.class_names is None and got.description == "t.csv"
    assert read_table_examples(path, features=["b", "a"]).x[0].tolist() == [0.5, 1]
    assert read_table_examples(path, features="b").input_shape == (1,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # target= is the name: no deprecation
        by_name = read_table_examples(path, target="a", features=["b"])
    assert by_name.y.tolist() == [1, 2, 3]
    with pytest.raises(TypeError):
        read_table_examples(path, label="a")  # type: ignore[call-arg]  # never released


def test_a_table_without_a_recognisable_target_lists_its_columns(tmp_path: Path) -> None:
    path = _table(tmp_path, a=[1, 2], b=[0.5, 1.5], kind=["x", "y"])
    with raises(
        "Expected `target` to name the target column of t.csv (its columns: 'a', 'b', 'kind'), "
        "but got none, and no column has a recognised target name ('target', 'label', 'y', "
        "'class'). Pick one with target=COLUMN."
    ):
        read_table_examples(path)
    with raises(
        "Expected `--target` to name the target column of t.csv (its columns: 'a', 'b', 'kind'), "
        "but got none, and no column has a recognised target name ('target', 'label', 'y', "
        "'class'). Pick one with --target COLUMN."
    ):
        read_labels(path, spelling=FLAGS)
    assert read_table_examples(path, target="kind").y.tolist() == ["x", "y"]


def test_read_table_examples_refusals(tmp_path: Path) -> None:
    path = _table(tmp_path, a=[1, 2], flag=[True, False], color=["r", "g"], label=["x", "y"])
    with raises(
        "Expected `features` to be numeric columns, but got non-numeric column(s) 'flag', 'color' "
        "(dtype 'bool', 'str'). Encode them as numbers (e.g. one-hot) or leave them out with "
        "features=[...]."
    ):
        read_table_examples(path)
    with raises(
        "Expected `--features` to be numeric columns, but got non-numeric column(s) 'color' "
        "(dtype 'str'). Encode them as numbers (e.g. one-hot) or leave them out with "
        "--features [...]."
    ):
        read_table_examples(path, features=["a", "color"], spelling=FLAGS)
    with raises(
        "Expected `features` to name at least one column of t.csv, but got ['z']. Pick from "
        "'a', 'flag', 'color', 'label'."
    ):
        read_table_examples(path, features=["a", "z"])
    with raises(
        "Expected `features` to name at least one column of t.csv, but got []. Pick from "
        "'a', 'flag', 'color', 'label'."
    ):
        read_table_examples(path, features=[])
    with raises(
        "Expected `features` to leave out the target column 'label', but got 'a', 'label'. Drop "
        "'label' from features: a model must not read its labels."
    ):
        read_table_examples(path, features=["a", "label"])
    with raises(
        "Expected `target` to be a column of t.csv ('a', 'flag', 'color', 'label'), but got "
        "'kind'. Pick one of those columns."
    ):
        read_table_examples(path, target="kind")
    path = _table(tmp_path, a=[1.0, np.nan, 3.0], b=[0.0, 1.0, np.inf], label=["x", None, "y"])
    with raises(
        "Expected `target` to have no missing values, but got 1 missing in column 'label' of "
        "t.csv. Drop or fill them first."
    ):
        read_table_examples(path)
    path = _table(tmp_path, a=[1.0, np.nan, 3.0], b=[0.0, 1.0, np.inf], label=["x", "y", "x"])
    with raises(
        "Expected `features` to have no missing or infinite values, but got 2 in column(s) 'a', "
        "'b' of t.csv. Impute or drop those rows first."
    ):
        read_table_examples(path)
    empty = tmp_path / "e.csv"
    empty.write_text("a,label\n")
    with raises(
        "Expected `path` to hold at least one label, but got none in column 'label' of e.csv. "
        "Check the file."
    ):
        read_table_examples(empty)
    with raises(
        "Expected `path` to be an existing .csv, .parquet or .pq file, but got 'nope.csv', which "
        "is no such file. Check the path."
    ):
        read_table_examples("nope.csv")
    npz = tmp_path / "d.npz"
    np.savez(npz, X=np.zeros((2, 2)), y=np.zeros(2))
    with raises(
        f"Expected `path` to be a .csv, .parquet or .pq file, but got {str(npz)!r}. Save the data "
        "in one of those formats."
    ):
        read_table_examples(npz)


# -- .npz of features and labels ---------------------------------------------------------


def test_read_npz_examples(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    np.savez(path, X=x, y=np.array(["b", "a", "b", "a"]), input_shape=np.array([2, 3]),
             class_names=np.array(["ant", "bee"]))  # fmt: skip
    got = read_npz_examples(path)
    assert got.x.dtype == np.float64 and got.x.shape == (4, 6)
    assert got.input_shape == (2, 3) and got.class_names == ("ant", "bee")
    assert read_npz_examples(path, input_shape=(6,)).input_shape == (6,)
    np.savez(path, X=x.reshape(4, 2, 3), y=np.array([0, 1, 0, 1]))
    got = read_npz_examples(path)
    assert got.input_shape == (2, 3) and got.x.shape == (4, 6) and got.class_names is None


def test_read_npz_examples_refusals(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, features=np.zeros((2, 2)), y=np.zeros(2))
    with raises(
        "Expected `path` to be an .npz with arrays 'X' and 'y', but got arrays 'features', 'y'. "
        "Save it with np.savez(path, X=X, y=y, input_shape=(1, 8, 8))."
    ):
        read_npz_examples(path)
    np.savez(path, X=np.array([[1 + 2j, 0]]), y=np.zeros(1))
    with raises("Expected `X` to be a real numeric array, but got dtype complex128. Save numbers."):
        read_npz_examples(path)
    np.savez(path, X=np.zeros((3, 2)), y=np.zeros((3, 1)))
    with raises(
        "Expected `y` to be 1-D with one label per row of X (3), but got shape (3, 1). Save one "
        "label per example.",
        ShapeMismatchError,
    ):
        read_npz_examples(path)
    np.savez(path, X=np.zeros((3, 4)), y=np.zeros(3))
    with raises(
        "Expected `input_shape` to hold the 4 values of one row of X, but got (3,). Declare the "
        "shape of one example, e.g. (1, 8, 8) or (8, 8).",
        ShapeMismatchError,
    ):
        read_npz_examples(path, input_shape=(3,))
    np.savez(path, X=np.zeros((3, 2)), y=np.array([0.0, np.nan, 1.0]))
    with raises(
        "Expected `y` to have no missing values, but got 1 NaN in array 'y' of d.npz. Drop or "
        "fill them first."
    ):
        read_npz_examples(path)
    np.savez(path, X=np.array([[0.0, np.nan], [np.inf, 1.0]]), y=np.array([0, 1]))
    with raises(
        "Expected `X` to have no missing or infinite values, but got 2 in array 'X' of d.npz. "
        "Impute or drop those rows."
    ):
        read_npz_examples(path)
    np.savez(path, X=np.zeros((0, 2)), y=np.zeros(0))
    with raises(
        "Expected `path` to hold at least one label, but got none in array 'y' of d.npz. Check "
        "the file."
    ):
        read_npz_examples(path)
    np.savez(path, X=np.array([np.array([1]), np.array([1, 2])], dtype=object), y=np.zeros(2))
    with pytest.raises(
        InvalidValueError, match=r"^Expected `path` to be a readable \.npz file, but got d\.npz: "
    ):
        read_npz_examples(path)  # object arrays are pickled; never unpickled here
    csv = tmp_path / "t.csv"
    csv.write_text("a,label\n1,x\n")
    with raises(
        f"Expected `path` to be a .npz file, but got {str(csv)!r}. Save the data in one of those "
        "formats."
    ):
        read_npz_examples(csv)
