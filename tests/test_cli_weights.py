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
        "--data", "--column", "--imbalance-ratio", "--seed", "--scheme", "--param",
        "--normalize", "--clip", "--zero-count", "--format", "--list-schemes", "digits-lt",
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
    report = as_json("--data", str(path), "--column", "species", "-s", "balanced")
    assert [(c["name"], c["count"]) for c in report["classes"]] == [
        ("cat", 3),
        ("dog", 2),
        ("emu", 1),
    ]
    assert report["description"] == "column 'species' of animals.csv"
    result = invoke("--data", str(path), "--column", "species")
    assert result.exit_code == 0 and "emu" in result.stdout


def test_csv_integer_labels_are_class_indices_and_label_column_is_found(tmp_path: Path) -> None:
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
        "Error: Expected `--data` to be 'digits-lt' or an existing .csv, .parquet, .pq or .npy "
        "file, but got 'nope.csv', which is no such file. Check the path.\n"
    )


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("0\n1\n")
    assert fails("--data", str(path)) == (
        "Error: Expected `--data` to be a .csv, .parquet, .pq or .npy file, but got "
        f"{str(path)!r}. Save the labels in one of those formats.\n"
    )


def test_missing_or_unnamed_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("species,x\ncat,1\ndog,2\n")
    assert fails("--data", str(path), "--column", "kind") == (
        "Error: Expected `--column` to be a column of t.csv ('species', 'x'), but got 'kind'. "
        "Pick one of those columns.\n"
    )
    assert fails("--data", str(path)) == (
        "Error: Expected `--column` to name the label column of t.csv ('species', 'x'), but got "
        "none, and no column is named 'target', 'label', 'y', 'class'. Pass --column NAME.\n"
    )


def test_missing_values_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("y,x\ncat,1\n,2\n")
    assert fails("--data", str(path), "-c", "y") == (
        "Error: Expected `--column` to have no missing values, but got 1 missing in column 'y' of "
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
    assert fails("--column", "y") == (
        "Error: Expected `--column` to be given only with a .csv or .parquet file, but got it with "
        "--data digits-lt. Drop --column.\n"
    )


def test_read_labels_directly() -> None:
    labels = read_labels("digits-lt", imbalance_ratio=100, seed=2)
    assert labels.class_names == tuple(str(i) for i in range(10))
    assert np.bincount(labels.values).tolist()[0] == 100
