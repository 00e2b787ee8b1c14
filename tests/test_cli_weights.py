"""`weightlab weights`: output (table and JSON), every data source, and clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from weightlab.cli import app
from weightlab.cli.labels import read_labels
from weightlab.cli.weights import FORMATS
from weightlab.lab.digits import load_digits_lt
from weightlab.weights import NORMALIZATIONS, ZERO_COUNT_POLICIES, class_weights, list_schemes

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, ["weights", *args])


def as_json(*args: str) -> dict[str, Any]:
    result = invoke(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def fails(*args: str) -> str:
    """Run, expect exit status 2 and nothing on stdout; return stderr."""
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    err: str = result.stderr
    return err


# --------------------------------------------------------------------------- help


def test_root_help_lists_weights() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "weights" in result.stdout
    assert "Count the labels of a data set" in result.stdout


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output


def test_weights_help_names_every_option() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for option in (
        "--data", "--target", "--column", "--imbalance-ratio", "--seed", "--scheme", "--param",
        "--normalize", "--clip", "--zero-count", "--format", "--list-schemes", "digits-lt",
        "--multilabel",
    ):  # fmt: skip
        assert option in result.stdout


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("weightlab ")


def test_cli_choices_are_the_library_choices() -> None:
    assert FORMATS == ("table", "json")
    help_text = invoke("--help").stdout
    for choice in (*NORMALIZATIONS, *ZERO_COUNT_POLICIES):
        assert choice in help_text


# --------------------------------------------------------------------------- output


def test_default_table_on_digits_lt() -> None:
    result = invoke()
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "digits-lt training split (imbalance ratio 10, seed 0): 403 samples, 10 classes" in out
    for word in (
        "class",
        "count",
        "share",
        "inverse",
        "balanced",
        "effective",
        "median",
        "uniform",
    ):
        assert word in out
    assert "24.8%" in out  # 100 of 403 samples in class 0
    assert "10.0x" in out  # inverse frequency spans the imbalance ratio
    assert "weights normalised to mean 1" in out


def test_json_on_digits_lt_matches_the_library() -> None:
    report = as_json("--imbalance-ratio", "100", "--seed", "1")
    y = load_digits_lt(100, seed=1).y_train
    counts = np.bincount(y)
    assert [c["count"] for c in report["classes"]] == counts.tolist()
    assert [c["name"] for c in report["classes"]] == [str(i) for i in range(10)]
    assert report["n_samples"] == len(y)
    assert sum(c["share"] for c in report["classes"]) == pytest.approx(1.0)
    assert list(report["weights"]) == list_schemes()
    for name, weights in report["weights"].items():
        np.testing.assert_allclose(weights, class_weights(counts, name), rtol=1e-12)
    assert report["normalize"] == "mean" and report["clip"] is None
    assert report["params"]["effective_number"] == {"beta": 0.999}


def test_json_with_chosen_schemes_params_and_options() -> None:
    report = as_json(
        "-s", "effective_number", "-s", "balanced", "-s", "effective_number",
        "-p", "beta=0.99", "--normalize", "none", "--clip", "5",
    )  # fmt: skip
    counts = np.array([c["count"] for c in report["classes"]])
    assert list(report["weights"]) == ["effective_number", "balanced"]
    assert report["params"] == {"effective_number": {"beta": 0.99}, "balanced": {}}
    expected = class_weights(counts, "effective_number", beta=0.99, normalize="none", clip=5)
    np.testing.assert_allclose(report["weights"]["effective_number"], expected, rtol=1e-12)
    assert max(report["weights"]["balanced"]) / min(report["weights"]["balanced"]) == (
        pytest.approx(5.0)
    )


def test_csv_with_string_labels_keeps_sorted_names(tmp_path: Path) -> None:
    path = tmp_path / "animals.csv"
    pd.DataFrame({"x": range(6), "species": ["dog", "cat", "emu", "cat", "cat", "dog"]}).to_csv(
        path, index=False
    )
    report = as_json("--data", str(path), "--target", "species", "-s", "balanced")
    assert [(c["name"], c["count"]) for c in report["classes"]] == [
        ("cat", 3),
        ("dog", 2),
        ("emu", 1),
    ]
    assert report["description"] == "column 'species' of animals.csv"
    result = invoke("--data", str(path), "--target", "species")
    assert result.exit_code == 0 and "emu" in result.stdout


def test_csv_integer_labels_are_class_indices_and_target_column_is_found(tmp_path: Path) -> None:
    path = tmp_path / "y.csv"
    pd.DataFrame({"feature": [0.1, 0.2, 0.3, 0.4], "label": [2, 0, 2, 1]}).to_csv(path, index=False)
    report = as_json("--data", str(path))
    assert [c["count"] for c in report["classes"]] == [1, 1, 2]


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "y.parquet"
    pd.DataFrame({"target": ["b", "a", "b"], "x": [1, 2, 3]}).to_parquet(path)
    report = as_json("--data", str(path), "-s", "inverse")
    assert [(c["name"], c["count"]) for c in report["classes"]] == [("a", 1), ("b", 2)]


def test_npy(tmp_path: Path) -> None:
    path = tmp_path / "y.npy"
    np.save(path, np.array([0, 1, 1, 1]))
    assert [c["count"] for c in as_json("--data", str(path))["classes"]] == [1, 3]
    np.save(path, np.array(["b", "a", "b"]))
    assert [c["name"] for c in as_json("--data", str(path))["classes"]] == ["a", "b"]


def test_list_schemes() -> None:
    result = invoke("--list-schemes")
    assert result.exit_code == 0
    for name in list_schemes():
        assert name in result.stdout
    assert "beta=0.999" in result.stdout
    rows = json.loads(invoke("--list-schemes", "--format", "json").stdout)
    assert [row["name"] for row in rows] == list_schemes()
    assert rows[4]["params"] == {"beta": 0.999}


@pytest.mark.slow  # starts a process
def test_real_console_script_prints_valid_json() -> None:
    script = Path(sys.executable).parent / "weightlab"
    out = subprocess.run(
        [str(script), "weights", "--data", "digits-lt", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)  # the whole of stdout is one JSON document
    assert [c["count"] for c in report["classes"]] == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]


# --------------------------------------------------------------------------- errors


def test_missing_file() -> None:
    assert fails("--data", "nope.csv") == (
        "Error: Expected `--data` to be 'digits-lt' or an existing .csv, .parquet, .pq, .npy or "
        ".npz file, but got 'nope.csv', which is no such file. Check the path.\n"
    )


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("0\n1\n")
    assert fails("--data", str(path)) == (
        "Error: Expected `--data` to be a .csv, .parquet, .pq, .npy or .npz file, but got "
        f"{str(path)!r}. Save the labels in one of those formats.\n"
    )


def test_missing_or_unnamed_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("species,x\ncat,1\ndog,2\n")
    assert fails("--data", str(path), "--target", "kind") == (
        "Error: Expected `--target` to be a column of t.csv ('species', 'x'), but got 'kind'. "
        "Pick one of those columns.\n"
    )
    assert fails("--data", str(path)) == (
        "Error: Expected `--target` to name the target column of t.csv (its columns: 'species', "
        "'x'), but got none, and no column has a recognised target name ('target', 'label', 'y', "
        "'class'). Pick one with --target COLUMN.\n"
    )


def test_missing_values_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("y,x\ncat,1\n,2\n")
    assert fails("--data", str(path), "-t", "y") == (
        "Error: Expected `--target` to have no missing values, but got 1 missing in column 'y' of "
        "t.csv. Drop or fill them first.\n"
    )
    path.write_text("y\n")
    assert fails("--data", str(path)) == (
        "Error: Expected `--data` to hold at least one label, but got none in column 'y' of t.csv. "
        "Check the file.\n"
    )


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.npy"
    path.write_text("not numpy")
    assert fails("--data", str(path)).startswith(
        "Error: Expected `--data` to be a readable .npy file, but got bad.npy: "
    )


def test_parquet_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "y.parquet"
    pd.DataFrame({"y": [0, 1]}).to_parquet(path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert fails("--data", str(path)) == (
        "Error: Reading y.parquet needs pyarrow, which is not installed. Install it with: "
        "pip install 'weightlab[parquet]'\n"
    )


def test_unknown_scheme() -> None:
    assert fails("--scheme", "focal") == (
        "Error: Expected `--scheme` to be one of 'inverse', 'balanced', 'sqrt_inverse', 'power', "
        "'effective_number', 'median_frequency', 'log', 'uniform', but got 'focal'. See "
        "`weightlab weights --list-schemes`.\n"
    )


def test_bad_params() -> None:
    assert fails("-p", "beta") == (
        "Error: Expected `--param` to be NAME=NUMBER, but got 'beta'. Write it like --param "
        "beta=0.99.\n"
    )
    assert fails("-s", "balanced", "-p", "beta=0.9") == (
        "Error: Expected `--param` to name a parameter of the chosen schemes (they take none), but "
        "got 'beta'. See `weightlab weights --list-schemes`.\n"
    )
    assert fails("-p", "beta=1.5", "-s", "effective_number") == (
        "Error: Expected `beta` to be a number in [0, 1), but got 1.5. Use e.g. beta=0.999 (Cui et "
        "al. 2019); values closer to 1 weight rare classes more.\n"
    )


@pytest.mark.parametrize(
    ("option", "value", "choices"),
    [
        ("--normalize", "sum", "'mean', 'max', 'min', 'none'"),
        ("--zero-count", "skip", "'raise', 'zero', 'max'"),
        ("--format", "yaml", "'table', 'json'"),
    ],
)
def test_bad_choices(option: str, value: str, choices: str) -> None:
    assert fails(option, value) == (
        f"Error: Expected `{option}` to be one of {choices}, but got {value!r}. "
        "Pick one of those.\n"
    )


def test_bad_clip() -> None:
    assert fails("--clip", "0.5") == (
        "Error: Expected `--clip` to be a number >= 1 (the largest allowed max(w) / min(w)), but "
        "got 0.5. Use e.g. --clip 10, or leave it out.\n"
    )


def test_zero_counts_and_their_policies(tmp_path: Path) -> None:
    path = tmp_path / "y.npy"
    np.save(path, np.array([0, 0, 2]))
    assert fails("--data", str(path)) == (
        "Error: Expected `counts` to be > 0 for every class, but got 0 for classes [1]. Drop the "
        "empty classes, or pass zero_count='zero' (weight 0) or zero_count='max' (the largest "
        "weight). On the command line: --zero-count zero or --zero-count max.\n"
    )
    report = as_json(
        "--data", str(path), "--zero-count", "zero", "-s", "inverse", "--normalize", "none"
    )
    assert report["weights"]["inverse"] == [0.5, 0.0, 1.0]


def test_bad_labels_in_files(tmp_path: Path) -> None:
    path = tmp_path / "y.npy"
    np.save(path, np.zeros((2, 2)))
    assert fails("--data", str(path)) == (
        "Error: Expected `--data` to hold a 1-D array of labels, but got shape (2, 2) in y.npy. "
        "Save labels.ravel() for masks, or one label per sample.\n"
    )
    np.save(path, np.array([0, -1]))
    assert fails("--data", str(path)).startswith(
        "Error: Expected `labels` to be class indices >= 0, but got -1 (the smallest label)."
    )


def test_options_that_do_not_apply(tmp_path: Path) -> None:
    path = tmp_path / "y.npy"
    np.save(path, np.array([0, 1]))
    assert fails("--data", str(path), "--seed", "3") == (
        f"Error: Expected `--seed` to be given only with --data digits-lt, but got it with --data "
        f"{path}. Drop --seed.\n"
    )
    assert fails("--target", "y") == (
        "Error: Expected `--target` to be given only with a .csv or .parquet file, but got it with "
        "--data digits-lt. Drop --target.\n"
    )


def test_read_labels_directly() -> None:
    labels = read_labels("digits-lt", imbalance_ratio=100, seed=2)
    assert labels.class_names == tuple(str(i) for i in range(10))
    assert np.bincount(labels.values).tolist()[0] == 100


# --------------------------------------------------------------------------- multi-label


def reference(y: np.ndarray[Any, Any]) -> tuple[list[int], list[int], list[float]]:
    """Positives, negatives and pos_weight per label, computed here with numpy alone."""
    positives = y.astype(np.int64).sum(axis=0)
    negatives = len(y) - positives
    return positives.tolist(), negatives.tolist(), (negatives / positives).tolist()


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.int64, np.float32, np.float64])
def test_multilabel_npy_json_matches_numpy(tmp_path: Path, dtype: type) -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((500, 4)) < [0.5, 0.2, 0.05, 0.02]).astype(dtype)
    path = tmp_path / "targets.npy"
    np.save(path, y)
    report = as_json("--multilabel", "--data", str(path))
    positives, negatives, weights = reference(y)
    assert set(report) == {
        "data", "description", "n_samples", "num_labels", "zero_count", "labels", "pos_weight",
    }  # fmt: skip
    assert report["data"] == str(path) and report["description"] == "targets.npy"
    assert report["n_samples"] == 500 and report["num_labels"] == 4
    assert report["zero_count"] == "raise"
    assert [row["index"] for row in report["labels"]] == [0, 1, 2, 3]
    assert [row["name"] for row in report["labels"]] == ["0", "1", "2", "3"]
    assert [row["positives"] for row in report["labels"]] == positives
    assert [row["negatives"] for row in report["labels"]] == negatives
    assert [row["share"] for row in report["labels"]] == pytest.approx([p / 500 for p in positives])
    np.testing.assert_allclose(report["pos_weight"], weights, rtol=1e-12)


def test_multilabel_npy_table(tmp_path: Path) -> None:
    path = tmp_path / "targets.npy"
    np.save(path, np.array([[1, 0], [1, 1], [0, 0], [0, 0]]))
    result = invoke("--multilabel", "--data", str(path))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "targets.npy: 4 samples, 2 labels" in out
    for word in ("label", "positives", "negatives", "share", "pos_weight"):
        assert word in out
    assert "50.0%" in out and "25.0%" in out
    assert "1.000" in out and "3.000" in out  # 2/2 and 3/1
    assert "pos_weight = negatives / positives, for BCEWithLogitsLoss(pos_weight=...)" in out


def test_multilabel_csv_named_columns_in_the_order_given(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = (rng.random((200, 3)) < [0.3, 0.1, 0.6]).astype(int)
    path = tmp_path / "tags.csv"
    pd.DataFrame({"id": range(200), "cat": y[:, 0], "dog": y[:, 1], "bird": y[:, 2]}).to_csv(
        path, index=False
    )
    report = as_json("--multilabel", "--data", str(path), "-t", "bird", "-t", "cat", "-t", "bird")
    order = [2, 0]  # bird, cat; a repeated name counts once
    positives, negatives, weights = reference(y[:, order])
    assert report["description"] == "tags.csv" and report["n_samples"] == 200
    assert [row["name"] for row in report["labels"]] == ["bird", "cat"]
    assert [row["positives"] for row in report["labels"]] == positives
    assert [row["negatives"] for row in report["labels"]] == negatives
    np.testing.assert_allclose(report["pos_weight"], weights, rtol=1e-12)
    result = invoke("--multilabel", "--data", str(path), "-t", "cat", "-t", "dog")
    assert result.exit_code == 0, result.output
    assert "tags.csv: 200 samples, 2 labels" in result.stdout and "dog" in result.stdout


def test_multilabel_table_without_column_uses_every_column(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text("a,b,c\nTrue,0,1.0\nFalse,1,1.0\nTrue,1,0.0\n")  # bool, int and float columns
    report = as_json("--multilabel", "--data", str(path))
    assert [(r["name"], r["positives"], r["negatives"]) for r in report["labels"]] == [
        ("a", 2, 1),
        ("b", 2, 1),
        ("c", 2, 1),
    ]
    assert report["pos_weight"] == [0.5, 0.5, 0.5]


def test_multilabel_parquet(tmp_path: Path) -> None:
    path = tmp_path / "tags.parquet"
    pd.DataFrame(
        {"x": [0.1, 0.2, 0.3, 0.4], "a": [1, 0, 0, 0], "b": [True, True, False, True]}
    ).to_parquet(path)
    report = as_json("--multilabel", "--data", str(path), "-t", "a", "-t", "b")
    assert [r["positives"] for r in report["labels"]] == [1, 3]
    assert report["pos_weight"] == [3.0, 1 / 3]


def test_multilabel_zero_count_policies(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    pd.DataFrame({"cat": [1, 0, 1, 1], "dog": [0, 1, 0, 0], "bird": [0, 0, 0, 0]}).to_csv(
        path, index=False
    )
    assert fails("--multilabel", "--data", str(path)) == (
        "Error: Expected `positives` to be > 0 for every label, but got 0 for labels [2]. Drop the "
        "labels without positives, or pass zero_count='zero' (weight 0) or zero_count='max' (the "
        "largest weight). On the command line: --zero-count zero or --zero-count max.\n"
    )
    report = as_json("--multilabel", "--data", str(path), "--zero-count", "zero")
    assert report["zero_count"] == "zero"
    assert [r["positives"] for r in report["labels"]] == [3, 1, 0]
    assert [r["negatives"] for r in report["labels"]] == [1, 3, 4]
    assert report["pos_weight"] == [1 / 3, 3.0, 0.0]
    assert as_json("--multilabel", "--data", str(path), "--zero-count", "max")["pos_weight"] == [
        1 / 3,
        3.0,
        3.0,
    ]
    result = invoke("--multilabel", "--data", str(path), "--zero-count", "zero")
    assert result.exit_code == 0, result.output
    assert "labels without positives get weight 0 (--zero-count zero)" in result.stdout
    assert fails("--multilabel", "--data", str(path), "--zero-count", "skip") == (
        "Error: Expected `--zero-count` to be one of 'raise', 'zero', 'max', but got 'skip'. "
        "Pick one of those.\n"
    )


def test_multilabel_refuses_single_label_data(tmp_path: Path) -> None:
    assert fails("--multilabel") == (
        "Error: Expected `--data` to be a .csv, .parquet, .pq, .npy or .npz file of 0/1 labels "
        "with --multilabel, but got 'digits-lt', which is single-label (one class per sample). "
        "Pass --data labels.npy (an (N, L) 0/1 array) or a table of 0/1 target columns, or drop "
        "--multilabel.\n"
    )
    path = tmp_path / "y.npy"
    np.save(path, np.array([0, 1, 1]))
    assert fails("--multilabel", "--data", str(path)) == (
        "Error: Expected `--data` to hold a 2-D (N, L) array of 0/1 labels with --multilabel, but "
        "got shape (3,) in y.npy. Save one row of 0/1 labels per sample, or drop --multilabel for "
        "a 1-D array of class indices.\n"
    )
    np.save(path, np.zeros((2, 3, 4)))
    assert "but got shape (2, 3, 4) in y.npy." in fails("--multilabel", "--data", str(path))


@pytest.mark.parametrize(
    ("values", "shown", "label"),
    [
        ([[1, 0], [0, 2]], "2", 1),
        ([[1.0, 0.5]], "0.5", 1),
        ([[1.0, np.nan]], "nan", 1),
        ([[-1, 0]], "-1", 0),
        ([["a", "b"]], "'a'", 0),
    ],
)
def test_multilabel_refuses_values_other_than_0_and_1_in_npy(
    tmp_path: Path, values: list[list[Any]], shown: str, label: int
) -> None:
    path = tmp_path / "y.npy"
    np.save(path, np.array(values))
    assert fails("--multilabel", "--data", str(path)) == (
        f"Error: Expected `--data` to hold only 0 and 1 with --multilabel, but got {shown} in "
        f"label {label} of y.npy. Save 0/1 (or boolean) labels, or drop --multilabel for class "
        "indices.\n"
    )


def test_multilabel_refuses_values_other_than_0_and_1_in_tables(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text("id,cat,dog\n7,1,0\n8,0,yes\n")
    fix = (
        "Name the 0/1 target columns with --target (repeat it), or drop --multilabel for class "
        "indices.\n"
    )
    assert fails("--multilabel", "--data", str(path)) == (
        "Error: Expected `--data` to hold only 0 and 1 with --multilabel, but got 7 in column 'id' "
        f"of tags.csv. {fix}"
    )
    assert fails("--multilabel", "--data", str(path), "-t", "cat", "-t", "dog") == (
        "Error: Expected `--data` to hold only 0 and 1 with --multilabel, but got 'yes' in column "
        f"'dog' of tags.csv. {fix}"
    )


def test_multilabel_missing_column_values_and_files(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text("cat,dog\n1,0\n,1\n")
    assert fails("--multilabel", "--data", str(path), "-t", "dog", "-t", "emu") == (
        "Error: Expected `--target` to be a column of tags.csv ('cat', 'dog'), but got 'emu'. "
        "Pick one of those columns.\n"
    )
    assert fails("--multilabel", "--data", str(path), "-t", "cat,dog") == (
        "Error: Expected `--target` to be a column of tags.csv ('cat', 'dog'), but got 'cat,dog'. "
        "Pick one of those columns.\n"
    )
    assert fails("--multilabel", "--data", str(path)) == (
        "Error: Expected `--target` to have no missing values, but got 1 missing in column 'cat' "
        "of tags.csv. Drop or fill them first.\n"
    )
    path.write_text("cat,dog\n")
    assert fails("--multilabel", "--data", str(path)) == (
        "Error: Expected `--data` to hold at least one sample, but got none in tags.csv. Check the "
        "file.\n"
    )
    assert fails("--multilabel", "--data", "nope.npy") == (
        "Error: Expected `--data` to be an existing .csv, .parquet, .pq, .npy or .npz file with "
        "--multilabel, but got 'nope.npy', which is no such file. Check the path.\n"
    )
    txt = tmp_path / "tags.txt"
    txt.write_text("1 0\n")
    assert fails("--multilabel", "--data", str(txt)) == (
        "Error: Expected `--data` to be a .csv, .parquet, .pq, .npy or .npz file, but got "
        f"{str(txt)!r}. Save the labels in one of those formats.\n"
    )


@pytest.mark.parametrize(
    "option",
    [["--scheme", "balanced"], ["-p", "beta=0.9"], ["--normalize", "mean"], ["--clip", "0"]],
)
def test_multilabel_refuses_scheme_options(tmp_path: Path, option: list[str]) -> None:
    path = tmp_path / "y.npy"
    np.save(path, np.eye(3))
    name = {"-p": "--param"}.get(option[0], option[0])
    assert fails("--multilabel", "--data", str(path), *option) == (
        f"Error: Expected `{name}` to be given only without --multilabel, but got it with "
        f"--multilabel. Drop {name}: --multilabel prints pos_weight = negatives / positives per "
        "label, with no scheme, normalisation or clipping.\n"
    )


def test_multilabel_options_that_do_not_apply(tmp_path: Path) -> None:
    path = tmp_path / "y.npy"
    np.save(path, np.eye(3))
    assert fails("--multilabel", "--data", str(path), "-t", "0") == (
        "Error: Expected `--target` to be given only with a .csv or .parquet file, but got it with "
        f"--data {path}. Drop --target.\n"
    )
    assert fails("--multilabel", "--data", str(path), "--seed", "1") == (
        "Error: Expected `--seed` to be given only with --data digits-lt, but got it with --data "
        f"{path}. Drop --seed.\n"
    )


def test_several_columns_need_multilabel(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text("cat,dog\n1,0\n0,1\n")
    assert fails("--data", str(path), "-t", "cat", "-t", "dog") == (
        "Error: Expected `--target` to be given once without --multilabel, but got 2 columns "
        "('cat', 'dog'). Pass the one target column, or add --multilabel for 0/1 target "
        "columns.\n"
    )
    report = as_json("--data", str(path), "-t", "dog", "-t", "dog")  # the same column twice is one
    assert [c["count"] for c in report["classes"]] == [1, 1]


# --------------------------------------------------------------------------- .npz files


def test_npz_labels_are_its_y_array(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((4, 2)), y=np.array([0, 1, 1, 1]))
    report = as_json("--data", str(path), "-s", "inverse")
    assert [c["count"] for c in report["classes"]] == [1, 3]
    assert report["description"] == "array 'y' of d.npz"
    np.savez(path, X=np.zeros((4, 2)), y=np.array([3, 7, 7, 7]), class_names=["cat", "dog"])
    report = as_json("--data", str(path), "-s", "inverse")  # names of the sorted distinct labels
    assert [(c["name"], c["count"]) for c in report["classes"]] == [("cat", 1), ("dog", 3)]
    np.savez(path, y=np.array(["b", "a", "b"]))  # no X needed to count labels
    assert [c["name"] for c in as_json("--data", str(path))["classes"]] == ["a", "b"]


def test_npz_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((4, 2)), labels=np.zeros(4))
    assert fails("--data", str(path)) == (
        "Error: Expected `--data` to be an .npz with an array 'y' of labels, but got arrays "
        "'X', 'labels'. Save it with np.savez(path, X=X, y=y).\n"
    )
    np.savez(path, y=np.zeros((4, 2)))
    assert fails("--data", str(path)) == (
        "Error: Expected `--data` to hold a 1-D array of labels, but got shape (4, 2) in array "
        "'y' of d.npz. Save labels.ravel() for masks, or one label per sample.\n"
    )
    assert fails("--data", str(path), "--target", "y") == (
        "Error: Expected `--target` to be given only with a .csv or .parquet file, but got it with "
        f"--data {path}. Drop --target.\n"
    )
    np.savez(path, y=np.array([], dtype=np.int64))
    assert fails("--data", str(path)) == (
        "Error: Expected `--data` to hold at least one label, but got none in array 'y' of d.npz. "
        "Check the file.\n"
    )
    bad = tmp_path / "bad.npz"
    bad.write_text("not an archive")
    assert fails("--data", str(bad)).startswith(
        "Error: Expected `--data` to be a readable .npz file, but got bad.npz: "
    )


def test_multilabel_npz(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    y = np.array([[1, 0], [1, 1], [0, 0], [0, 0]])
    np.savez(path, X=np.zeros((4, 3)), y=y)
    report = as_json("--multilabel", "--data", str(path))
    assert [r["positives"] for r in report["labels"]] == [2, 1]
    assert report["pos_weight"] == [1.0, 3.0]
    np.savez(path, y=np.array([[1, 2]]))
    assert fails("--multilabel", "--data", str(path)) == (
        "Error: Expected `--data` to hold only 0 and 1 with --multilabel, but got 2 in label 1 of "
        "array 'y' of d.npz. Save 0/1 (or boolean) labels, or drop --multilabel for class "
        "indices.\n"
    )
    np.savez(path, y=np.array([0, 1]))
    assert fails("--multilabel", "--data", str(path)) == (
        "Error: Expected `--data` to hold a 2-D (N, L) array of 0/1 labels with --multilabel, but "
        "got shape (2,) in array 'y' of d.npz. Save one row of 0/1 labels per sample, or drop "
        "--multilabel for a 1-D array of class indices.\n"
    )
    np.savez(path, X=np.zeros((2, 2)))
    assert fails("--multilabel", "--data", str(path)) == (
        "Error: Expected `--data` to be an .npz with an array 'y' of 0/1 labels with "
        "--multilabel, but got arrays 'X'. Save it with np.savez(path, y=y), y of shape (N, L).\n"
    )


def test_parquet_index_is_not_a_column(tmp_path: Path) -> None:
    path = tmp_path / "tags.parquet"
    frame = pd.DataFrame({"a": [1, 0, 0, 1, 1], "b": [0, 1, 1, 1, 0]}).iloc[1:]  # not a range
    frame.to_parquet(path)
    report = as_json("--multilabel", "--data", str(path))
    assert [r["name"] for r in report["labels"]] == ["a", "b"]


# --------------------------------------------------------------------------- old names


NOTE = (
    "Note: --column is deprecated and will be removed in the next release; use --target "
    "instead.\n"
)


def old_spelling(*args: str) -> tuple[int, str, str]:
    """Run with the old spelling; return the exit code, stdout and stderr after the note."""
    result = invoke(*args)
    assert result.stderr.startswith(NOTE) and result.stderr.count("deprecated") == 1
    return result.exit_code, result.stdout, result.stderr[len(NOTE) :]


def test_column_is_an_alias_of_target_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "animals.csv"
    pd.DataFrame({"x": range(6), "species": ["dog", "cat", "emu", "cat", "cat", "dog"]}).to_csv(
        path, index=False
    )
    new = as_json("--data", str(path), "--target", "species")
    for flag in ("--column", "-c"):
        code, out, err = old_spelling("--data", str(path), flag, "species", "--format", "json")
        assert (code, err) == (0, "") and json.loads(out) == new
    assert invoke("--data", str(path), "--target", "species").stderr == ""  # no note for --target
    code, out, err = old_spelling("--data", str(path), "--column", "species")
    assert code == 0 and out == invoke("--data", str(path), "--target", "species").stdout


def test_column_alias_with_multilabel(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    pd.DataFrame({"id": [1, 2, 3], "cat": [1, 0, 1], "dog": [0, 1, 1]}).to_csv(path, index=False)
    new = as_json("--multilabel", "--data", str(path), "-t", "dog", "-t", "cat")
    code, out, err = old_spelling(
        "--multilabel", "--data", str(path), "-c", "dog", "-c", "cat", "--format", "json"
    )
    assert (code, err) == (0, "") and json.loads(out) == new
    mixed = as_json_with_note("--multilabel", "--data", str(path), "-t", "dog", "-c", "cat")
    assert mixed == new  # both spellings at once: --target's labels, then --column's


def as_json_with_note(*args: str) -> dict[str, Any]:
    code, out, err = old_spelling(*args, "--format", "json")
    assert (code, err) == (0, "")
    report: dict[str, Any] = json.loads(out)
    return report


def test_errors_name_the_old_option_when_it_was_typed(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("species,x\ncat,1\ndog,2\n")
    code, out, err = old_spelling("--data", str(path), "--column", "kind")
    assert (code, out) == (2, "")
    assert err == (
        "Error: Expected `--column` to be a column of t.csv ('species', 'x'), but got 'kind'. "
        "Pick one of those columns.\n"
    )
    code, _, err = old_spelling("--column", "y")
    assert code == 2 and err == (
        "Error: Expected `--column` to be given only with a .csv or .parquet file, but got it with "
        "--data digits-lt. Drop --column.\n"
    )
    code, _, err = old_spelling("--data", str(path), "-c", "species", "-c", "x")
    assert code == 2 and err.startswith("Error: Expected `--column` to be given once without ")
    code, _, err = old_spelling("--multilabel", "--data", str(path), "-c", "species")
    assert code == 2 and err.endswith(
        "Name the 0/1 target columns with --column (repeat it), or drop --multilabel for class "
        "indices.\n"
    )


# --------------------------------------------------------------------------- --target


def test_target_names_the_target_column_and_t_is_its_short_form(tmp_path: Path) -> None:
    path = tmp_path / "animals.csv"
    pd.DataFrame({"x": range(5), "species": ["dog", "cat", "emu", "cat", "cat"]}).to_csv(
        path, index=False
    )
    report = as_json("--data", str(path), "--target", "species", "-s", "inverse")
    assert [(c["name"], c["count"]) for c in report["classes"]] == [
        ("cat", 3),
        ("dog", 1),
        ("emu", 1),
    ]
    assert as_json("--data", str(path), "-t", "species", "-s", "inverse") == report
    help_text = " ".join(invoke("--help").stdout.replace("│", " ").split())
    assert "--target -t " in help_text and "Target column (the labels)" in help_text
    assert "--column -c " in help_text and "Deprecated old name of --target" in help_text


def test_label_was_never_an_option(tmp_path: Path) -> None:
    path = tmp_path / "y.csv"
    pd.DataFrame({"x": [1, 2], "species": ["a", "b"]}).to_csv(path, index=False)
    for flag in ("--label", "-l"):
        result = invoke("--data", str(path), flag, "species")
        assert result.exit_code == 2 and "No such option" in result.stderr


def test_column_alias_note_names_target(tmp_path: Path) -> None:
    path = tmp_path / "animals.csv"
    pd.DataFrame({"x": range(3), "species": ["a", "b", "b"]}).to_csv(path, index=False)
    result = invoke("--data", str(path), "--column", "species", "--format", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "Note: --column is deprecated and will be removed in the next release; use --target "
        "instead.\n"
    )
    assert json.loads(result.stdout) == as_json("--data", str(path), "--target", "species")


def test_a_table_without_a_recognisable_target_lists_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "animals.parquet"
    pd.DataFrame({"weight": [1.5, 2.5], "species": ["cat", "dog"]}).to_parquet(path)
    assert fails("--data", str(path)) == (
        "Error: Expected `--target` to name the target column of animals.parquet (its columns: "
        "'weight', 'species'), but got none, and no column has a recognised target name "
        "('target', 'label', 'y', 'class'). Pick one with --target COLUMN.\n"
    )
    assert fails("--data", str(path), "--target", "kind") == (
        "Error: Expected `--target` to be a column of animals.parquet ('weight', 'species'), but "
        "got 'kind'. Pick one of those columns.\n"
    )
    code, _, err = old_spelling("--data", str(path), "--column", "kind")
    assert code == 2 and err == (
        "Error: Expected `--column` to be a column of animals.parquet ('weight', 'species'), but "
        "got 'kind'. Pick one of those columns.\n"
    )
    report = as_json("--data", str(path), "--target", "species")
    assert [c["name"] for c in report["classes"]] == ["cat", "dog"]


def test_read_labels_target_keyword_and_its_deprecated_old_name(tmp_path: Path) -> None:
    import warnings

    path = tmp_path / "animals.csv"
    pd.DataFrame({"x": range(3), "species": ["b", "a", "b"]}).to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = read_labels(str(path), target="species")
    assert new.class_names == ("a", "b") and new.values.tolist() == [1, 0, 1]
    with pytest.warns(DeprecationWarning, match="^column= is deprecated .* use target= instead"):
        old = read_labels(str(path), column="species")
    assert (old.class_names, old.values.tolist()) == (new.class_names, new.values.tolist())
