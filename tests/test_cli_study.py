"""`weightlab study` and `weightlab results`: tiny real studies, outputs that parse, clean
errors, and a study SIGKILLed mid-way that a rerun completes without losing a trial."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from weightlab.cli import app
from weightlab.lab.store_sqlite import SQLiteStore
from weightlab.lab.study import StudySpec

runner = CliRunner()

TINY = [
    "--archs", "mlp", "--optimizers", "sgd,adam", "--weightings", "none,power",
    "--strengths", "0.5,1", "--seeds", "0,1", "--epochs", "1", "--lr", "0.05", "--quiet",
]  # fmt: skip


def fails(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


@pytest.fixture(scope="module")
def study_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("study") / "s.sqlite"
    result = runner.invoke(app, ["study", *TINY, "--store", str(store), "--metric", "macro_f1"])
    assert result.exit_code == 0, result.output
    assert "macro_f1 (higher is better)" in result.stdout
    assert "12 trials trained, 0 found in the store, 0 failed" in result.stderr
    return store


def test_study_stores_every_trial(study_store: Path) -> None:
    with SQLiteStore(study_store, create=False) as s:
        assert len(s) == 12
        assert s.get_meta("spec")["metric"] == "macro_f1"
        assert isinstance(s.get_meta("command"), list)
        assert s.get_meta("versions")["weightlab"]
        assert all("init" in r.extra["diagnostics"] for r in s.results())


def test_study_writes_its_report_beside_the_store(study_store: Path) -> None:
    html = (study_store.parent / "s-report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "macro_f1" in html


def test_rerun_resumes_and_trains_nothing(study_store: Path) -> None:
    args = ["study", *TINY, "--store", str(study_store), "--metric", "macro_f1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "0 trials trained, 12 found in the store" in result.stderr


def test_results_json_parses(study_store: Path) -> None:
    result = runner.invoke(app, ["results", str(study_store), "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["metric"] == "macro_f1"  # the study's own metric by default
    assert report["n_done"] == 12 and report["n_failed"] == 0
    rows = report["rows"]
    assert {(r["optimizer"], r["weighting"]) for r in rows} == {
        (o, w) for o in ("sgd", "adam") for w in ("none", "power(a=0.5)", "power(a=1)")
    }
    assert all(r["n"] == 2 and r["rank"] in (1, 2, 3) for r in rows)
    assert isinstance(report["answer"], str) and report["answer"]


def test_results_csv_parses_and_matches_json(study_store: Path) -> None:
    out = runner.invoke(app, ["results", str(study_store), "--format", "csv", "--metric", "ece"])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    js = json.loads(
        runner.invoke(app, ["results", str(study_store), "--format", "json", "--metric", "ece"])
        .stdout
    )
    assert len(rows) == len(js["rows"]) == 6
    assert [r["weighting"] for r in rows] == [r["weighting"] for r in js["rows"]]
    assert [float(r["mean"]) for r in rows] == pytest.approx([r["mean"] for r in js["rows"]])
    assert js["higher_is_better"] is False


def test_results_table(study_store: Path) -> None:
    out = runner.invoke(app, ["results", str(study_store), "--metric", "balanced_accuracy"])
    assert out.exit_code == 0, out.output
    flat = " ".join(out.stdout.split())
    assert "balanced_accuracy (higher is better) on test, mean ± std over seeds" in flat
    assert "power(a=0.5)" in out.stdout and "gain vs none [95 % CI]" in flat


def test_study_from_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        'archs = ["mlp"]\noptimizers = ["adam"]\nweightings = ["none", "balanced"]\n'
        "seeds = [3]\nepochs = 1\n[model_params.mlp]\nhidden = 8\n"
    )
    store = tmp_path / "c.sqlite"
    out = runner.invoke(app, ["study", "--config", str(cfg), "--store", str(store), "--quiet"])
    assert out.exit_code == 0, out.output
    with SQLiteStore(store, create=False) as s:
        assert s.finished_ids() == {c.trial_id for c in StudySpec.from_toml(cfg).trials()}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["study", "--archs", "mlp,vit"],
            "Error: Expected `archs` to be among 'mlp', 'cnn', 'gru', 'lstm', but got 'vit'. "
            "Pick from those names.",
        ),
        (
            ["study", "--strengths", "0,x"],
            "Error: Expected `--strengths` to be comma-separated numbers, but got '0,x'. "
            "Write it like --strengths 0,0.5,1.",
        ),
        (
            ["study", "--seeds", "0,,1"],
            "Error: Expected `--seeds` to be comma-separated integers, but got '0,,1'. "
            "Write it like --seeds 0,1,2.",
        ),
        (
            ["study", "--preset", "huge"],
            "Error: Expected `preset` to be one of 'quick', 'full', but got 'huge'. Pick one.",
        ),
        (
            ["study", "--workers", "0"],
            "Error: Expected `--workers` to be an integer >= 1, but got 0. Use 1 or more.",
        ),
        (
            ["study", "--data-param", "ratio"],
            "Error: Expected `--data-param` to be KEY=VALUE, but got 'ratio'. "
            "Write it like --data-param imbalance_ratio=50.",
        ),
        (
            ["results", "nope.sqlite"],
            "Error: Expected `store` to be an existing study store, but got 'nope.sqlite' "
            "(no such file). Run `weightlab study --store PATH` first, or check the path.",
        ),
    ],
)
def test_errors(args: list[str], message: str) -> None:
    assert fails(*args) == message


def test_results_bad_format_and_metric(study_store: Path) -> None:
    assert fails("results", str(study_store), "--format", "xml") == (
        "Error: Expected `--format` to be one of 'table', 'json', 'csv', but got 'xml'. "
        "Pick one of those."
    )
    assert fails("results", str(study_store), "--metric", "auc").startswith(
        "Error: Expected `metric` to be one of 'balanced_accuracy', "
    )


def test_bad_data_param_names_the_loader_option(tmp_path: Path) -> None:
    err = fails("study", *TINY, "--store", str(tmp_path / "x.sqlite"), "--data-param", "ratio=5")
    assert err.startswith("Error: Expected `params` to be among ")


# -- killed mid-way ------------------------------------------------------------------------

KILL_ARGS = [
    "--archs", "mlp", "--optimizers", "sgd,adam,adamw,rmsprop", "--weightings",
    "none,balanced", "--seeds", "0", "--epochs", "3", "--lr", "0.05", "--quiet",
]  # fmt: skip
KILL_SPEC = {
    "archs": ["mlp"], "optimizers": ["sgd", "adam", "adamw", "rmsprop"],
    "weightings": ["none", "balanced"], "seeds": [0], "epochs": 3, "lr": 0.05, "lrs": {},
}  # fmt: skip


def _weightlab() -> list[str]:
    exe = Path(sys.executable).with_name("weightlab")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from weightlab.cli import main; main()"]


def _rows(path: Path) -> dict[str, tuple[str, str]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT trial_id, status, result FROM trials WHERE status != 'running'"
        ).fetchall()
    finally:
        conn.close()
    return {tid: (status, result) for tid, status, result in rows}


@pytest.mark.slow  # starts a process
def test_sigkill_mid_study_then_rerun_loses_nothing(tmp_path: Path) -> None:
    store = tmp_path / "k.sqlite"
    cmd = [*_weightlab(), "study", *KILL_ARGS, "--store", str(store)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if store.exists() and _count_finished(store) > 0:
                break
            if proc.poll() is not None:
                pytest.fail(f"study ended before it could be killed: {proc.stderr.read()!r}")
            time.sleep(0.02)
        else:
            pytest.fail("no trial finished within 120 s")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = _rows(store)
    total = StudySpec.preset("quick", **KILL_SPEC).num_trials
    assert 0 < len(before) < total, "killed after the study had finished; make it longer"
    with SQLiteStore(store, create=False) as s:
        # Where the kill landed decides whether a stack was marked running (it
        # can land between one stack's last put and the next stack's mark);
        # test_lab_study checks the marking itself. Running rows are never finished.
        assert not s.running_ids() & s.finished_ids()

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{total - len(before)} trials trained, {len(before)} found in the store" in (
        rerun.stderr
    )
    after = _rows(store)
    assert len(after) == total
    assert {tid: after[tid] for tid in before} == before  # finished rows untouched
    with SQLiteStore(store, create=False) as s:
        assert s.running_ids() == set()
        want = StudySpec.preset("quick", **KILL_SPEC).trials()
        assert s.finished_ids() == {c.trial_id for c in want}
        assert s.get_meta("command")[1:3] == ["study", "--archs"]


def _count_finished(path: Path) -> int:
    try:
        return len(_rows(path))
    except sqlite3.OperationalError:  # tables not created yet
        return 0


# -- user data files: --target (the data param target=) and features= --------------------

ONE_TRIAL = [
    "--archs", "mlp", "--optimizers", "sgd", "--weightings", "none", "--seeds", "0",
    "--epochs", "1", "--lr", "0.05", "--quiet", "--no-report", "--no-diagnostics",
]  # fmt: skip


def _animals(tmp_path: Path) -> Path:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    path = tmp_path / "animals.csv"
    species = ["cat"] * 60 + ["dog"] * 30 + ["emu"] * 20
    pd.DataFrame(
        {"a": rng.normal(size=110), "b": rng.normal(size=110), "code": np.arange(110) % 3,
         "species": species}
    ).to_csv(path, index=False)  # fmt: skip
    return path


def _metrics(store: Path) -> list[dict[str, float]]:
    with SQLiteStore(store, create=False) as s:
        return [r.metrics for r in s.results()]


@pytest.mark.filterwarnings("error::DeprecationWarning")  # target is the name: no deprecation
def test_study_target_option_and_the_data_param_target(tmp_path: Path) -> None:
    data = _animals(tmp_path)
    common = ["study", *ONE_TRIAL, "--data", str(data), "--data-param", 'features=["a", "b"]']
    new = runner.invoke(app, [*common, "--target", "species",
                              "--store", str(tmp_path / "new.sqlite")])  # fmt: skip
    assert new.exit_code == 0, new.output
    assert "deprecated" not in new.stderr
    old = runner.invoke(app, [*common, "--data-param", "target=species",
                              "--store", str(tmp_path / "old.sqlite")])  # fmt: skip
    assert old.exit_code == 0, old.output
    assert "Note:" not in old.stderr and "deprecated" not in old.stderr
    assert _metrics(tmp_path / "old.sqlite") == _metrics(tmp_path / "new.sqlite")
    assert old.stdout == new.stdout  # the same summary
    # --target is the data param target, so a store started with either resumes with the other
    again = runner.invoke(app, [*common, "--target", "species",
                                "--store", str(tmp_path / "old.sqlite")])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "0 trials trained, 1 found in the store" in again.stderr


@pytest.mark.filterwarnings("error::DeprecationWarning")
def test_study_file_data_params_target_works_without_a_note(tmp_path: Path) -> None:
    data = _animals(tmp_path)
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        f'data = "{data}"\narchs = ["mlp"]\noptimizers = ["sgd"]\nweightings = ["none"]\n'
        'seeds = [0]\nepochs = 1\n[data_params]\ntarget = "species"\nfeatures = ["a", "b"]\n'
    )
    out = runner.invoke(app, ["study", "--config", str(cfg), "--store", str(tmp_path / "c.sqlite"),
                              "--quiet", "--no-report", "--no-diagnostics"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "Note:" not in out.stderr and "deprecated" not in out.stderr


def test_study_data_file_errors(tmp_path: Path) -> None:
    import warnings

    data = _animals(tmp_path)
    store = str(tmp_path / "e.sqlite")
    args = ["study", *ONE_TRIAL, "--store", store, "--data", str(data)]
    assert fails(*args, "--data-param", "target=kind") == (
        "Error: Expected `target` to be a column of animals.csv ('a', 'b', 'code', 'species'), but "
        "got 'kind'. Pick one of those columns."
    )
    assert fails(*args) == (
        "Error: Expected `--target` to name the target column of animals.csv (its columns: 'a', "
        "'b', 'code', 'species'), but got none, and no column has a recognised target name "
        "('target', 'label', 'y', 'class'). Pick one with --target COLUMN."
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation: target is the name
        err = fails(*args, "--target", "kind")
    assert err == (
        "Error: Expected `--target` to be a column of animals.csv ('a', 'b', 'code', 'species'), "
        "but got 'kind'. Pick one of those columns."
    )
    labels = tmp_path / "y.npy"
    labels.write_bytes(b"")  # its suffix decides; it is never opened
    assert fails("study", *ONE_TRIAL, "--store", store, "--data", str(labels)) == (
        "Error: Expected `name_or_path` to be a .csv, .parquet, .pq or .npz file, with features "
        f"and labels, but got {str(labels)!r}, an .npy file of labels alone. Save the features "
        "with the labels: np.savez('data.npz', X=X, y=y), or a table with a target column "
        "(`weightlab weights` counts an .npy of labels)."
    )


def test_study_parquet_without_pyarrow_is_a_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    path = tmp_path / "t.parquet"
    pd.DataFrame({"a": [0.0, 1.0] * 10, "label": [0, 1] * 10}).to_parquet(path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    args = ["study", *ONE_TRIAL, "--store", str(tmp_path / "p.sqlite"), "--data", str(path)]
    assert fails(*args) == (
        "Error: Reading t.parquet needs pyarrow, which is not installed. Install it with: "
        "pip install 'weightlab[parquet]'"
    )


def test_study_help_uses_the_vocabulary() -> None:
    out = runner.invoke(app, ["study", "--help"])
    assert out.exit_code == 0
    text = " ".join(out.stdout.replace("│", " ").split())  # the help column's lines, joined
    for words in ("target=COLUMN", "features=", ".npz", "--target <str> Target column"):
        assert words in text


# -- `weightlab study --target` (issue 13, point 6) ----------------------------------------


def _my_csv(tmp_path: Path) -> Path:
    """A table with a column named target (the default) and one named label."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    path = tmp_path / "my.csv"
    pd.DataFrame(
        {"a": rng.normal(size=90), "target": np.arange(90) % 2,
         "label": ["ant"] * 50 + ["bee"] * 25 + ["cat"] * 15}
    ).to_csv(path, index=False)  # fmt: skip
    return path


def _trial_ids(store: Path) -> set[str]:
    with SQLiteStore(store, create=False) as s:
        return set(s.finished_ids())


def test_study_target_label_equals_data_param_target_label(tmp_path: Path) -> None:
    data = _my_csv(tmp_path)
    common = ["study", *ONE_TRIAL, "--data", str(data), "--data-param", 'features=["a"]']
    flag = runner.invoke(app, [*common, "--target", "label", "--store", str(tmp_path / "f.sqlite")])
    assert flag.exit_code == 0, flag.output
    param = runner.invoke(
        app, [*common, "--data-param", "target=label", "--store", str(tmp_path / "p.sqlite")]
    )
    assert param.exit_code == 0, param.output
    assert _trial_ids(tmp_path / "f.sqlite") == _trial_ids(tmp_path / "p.sqlite")
    assert len(_trial_ids(tmp_path / "f.sqlite")) == 1
    assert _metrics(tmp_path / "f.sqlite") == _metrics(tmp_path / "p.sqlite")
    with SQLiteStore(tmp_path / "f.sqlite", create=False) as s:
        (result,) = s.results()
    assert dict(result.config.data_params) == {"features": ["a"], "target": "label"}
    default = runner.invoke(app, [*common, "--store", str(tmp_path / "d.sqlite")])
    assert default.exit_code == 0, default.output  # without --target: the column named target
    assert _trial_ids(tmp_path / "d.sqlite").isdisjoint(_trial_ids(tmp_path / "f.sqlite"))
    both = runner.invoke(app, [*common, "--target", "label", "--data-param", "target=label",
                               "--store", str(tmp_path / "f.sqlite")])  # fmt: skip
    assert both.exit_code == 0, both.output  # the same column twice: fine, and resumed
    assert "0 trials trained, 1 found in the store" in both.stderr


def test_study_target_and_data_param_target_that_differ(tmp_path: Path) -> None:
    data = _my_csv(tmp_path)
    args = ["study", *ONE_TRIAL, "--store", str(tmp_path / "x.sqlite"), "--data", str(data)]
    assert fails(*args, "--target", "label", "--data-param", "target=a") == (
        "Error: Expected `--target` to agree with --data-param target= when both are given, but "
        "got --target 'label' and --data-param target='a'. Drop one of them: --target COLUMN "
        "sets the data param target."
    )
    assert not (tmp_path / "x.sqlite").exists()  # refused before any store or training


def test_study_target_only_with_a_table(tmp_path: Path) -> None:
    import numpy as np

    store = str(tmp_path / "x.sqlite")
    assert fails("study", *ONE_TRIAL, "--store", store, "--target", "y") == (
        "Error: Expected `--target` to be given only with a .csv or .parquet file, but got it "
        "with --data digits-lt. Drop --target."
    )
    npz = tmp_path / "d.npz"
    np.savez(npz, X=np.zeros((20, 2)), y=np.arange(20) % 2)
    assert fails("study", *ONE_TRIAL, "--store", store, "--data", str(npz), "--target", "y") == (
        "Error: Expected `--target` to be given only with a .csv or .parquet file, but got it "
        f"with --data {npz}. Drop --target."
    )


def test_study_csv_without_a_recognisable_target_lists_its_columns(tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "my.csv"
    pd.DataFrame({"a": [0.5, 1.5] * 10, "kind": ["x", "y"] * 10}).to_csv(path, index=False)
    store = tmp_path / "x.sqlite"
    assert fails("study", *ONE_TRIAL, "--store", str(store), "--data", str(path)) == (
        "Error: Expected `--target` to name the target column of my.csv (its columns: 'a', "
        "'kind'), but got none, and no column has a recognised target name ('target', 'label', "
        "'y', 'class'). Pick one with --target COLUMN."
    )
    assert not store.exists()  # refused before any store or training
    result = runner.invoke(
        app, ["study", *ONE_TRIAL, "--store", str(store), "--data", str(path), "--target", "kind"]
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr-grid", "sgd"], "Error: Expected `--lr-grid` to be OPTIMIZER=LR,LR, but got 'sgd'."),
        (["--lr-grid", "sgd=0.1,x"], "Error: Expected `--lr-grid` to be comma-separated numbers"),
        (["--lr-grid", "sgdd=0.1"], "Error: Expected `lrs` to map optimizers"),
        (["--patience", "0"], "Error: Expected `patience` to be None or an integer >= 1"),
    ],
)
def test_bad_lr_grid_and_patience_name_the_fix(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = runner.invoke(app, ["study", *args, "--store", str(tmp_path / "s.sqlite")])
    assert out.exit_code == 2
    assert " ".join(out.output.split()).startswith(message), out.output
