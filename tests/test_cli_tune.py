"""`weightlab tune` from the command line: output, bad input, a killed run resumed, the report."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from weightlab.cli import app
from weightlab.lab.store_sqlite import SQLiteStore
from weightlab.tune.run import journal_path

runner = CliRunner()
SMALL = [
    "--trials",
    "6",
    "--batch",
    "3",
    "--epochs",
    "3",
    "--judge-seeds",
    "1,2",
    "--weightings",
    "none,power,focal",
    "--quiet",
]


def _weightlab() -> list[str]:
    exe = Path(sys.executable).with_name("weightlab")
    return (
        [str(exe)]
        if exe.exists()
        else [sys.executable, "-c", "from weightlab.cli import main; main()"]
    )


def test_help_lists_the_flags():
    out = runner.invoke(app, ["tune", "--help"], terminal_width=200)
    assert out.exit_code == 0
    for flag in (
        "--data",
        "--target",
        "--archs",
        "--optimizers",
        "--store",
        "--model",
        "--trials",
        "--batch",
        "--metric",
        "--sampler",
        "--pruner",
        "--range",
        "--executor",
        "--format",
    ):
        assert flag in out.output


def test_a_tuning_prints_the_choice_and_writes_a_store_results_and_report_read(tmp_path):
    store = tmp_path / "t.sqlite"
    out = runner.invoke(app, ["tune", *SMALL, "--store", str(store)], terminal_width=200)
    assert out.exit_code == 0, out.output
    flat = " ".join(out.output.split())  # rich wraps to the terminal's width
    assert "mlp/adam: 6 trials" in flat and "gain vs" in flat
    assert "class weights (by class): 0=" in flat and "loss: weightlab.losses." in flat
    assert journal_path(store).is_file()
    report = tmp_path / "t-report.html"
    assert report.is_file() and "Tuning" in report.read_text()
    res = runner.invoke(app, ["results", str(store)], terminal_width=200)
    assert res.exit_code == 0 and "tuning trial(s)" in " ".join(res.output.split())
    rep = runner.invoke(app, ["report", str(store), "--output", str(tmp_path / "r.html")])
    assert 'id="tuning"' in (tmp_path / "r.html").read_text()
    assert rep.exit_code == 0, rep.output


def test_json_output(tmp_path):
    out = runner.invoke(
        app,
        ["tune", *SMALL, "--store", str(tmp_path / "t.sqlite"), "--no-report", "--format", "json"],
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout[out.stdout.index("{") :])
    cell = doc["cells"][0]
    assert cell["cell"] == "mlp/adam" and cell["trials"] == 6
    assert cell["judged"][0]["role"] == "chosen" and "class_weight" in cell["judged"][0]


def test_a_model_file_with_an_lstm(tmp_path):
    f = tmp_path / "net.py"
    f.write_text(
        textwrap.dedent("""
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(8, 12, batch_first=True)
                self.head = nn.Linear(12, 10)

            def forward(self, x):
                out, _ = self.lstm(x.reshape(len(x), 8, 8))
                return self.head(out[:, -1])

        def make():
            return Net()
    """)
    )
    out = runner.invoke(
        app,
        [
            "tune",
            *SMALL,
            "--model",
            f"{f}:make",
            "--store",
            str(tmp_path / "t.sqlite"),
            "--no-report",
        ],
        terminal_width=200,
    )
    assert out.exit_code == 0, out.output
    flat = " ".join(out.output.split())
    assert "make/adam: 6 trials" in flat and "one by one: torch.func.vmap cannot stack it" in flat


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "0"], "Error: Expected `trials` to be an integer >= 1"),
        (["--metric", "balanced_accuracy,nope"], "Error: Expected `metric` to be among"),
        (["--range", "focal.gamma=3:1"], "Error: Expected `focal.gamma` to be a non-empty range"),
        (["--range", "focal.beta=0:1"], "Error: Expected `ranges` to name a family.param"),
        (["--range", "gamma"], "Error: Expected `--range` to be FAMILY.PARAM=LOW:HIGH"),
        (["--weightings", "none,nope"], "Error: Expected `weightings` to be among"),
        (["--sampler", "bayes"], "Error: Expected `sampler` to be one of"),
        (["--model", "nowhere.py:make"], "Error: Expected `model` to name an importable file"),
        (["--tune-lr", "0.1"], "Error: Expected `--tune-lr` to be LOW:HIGH"),
        (["--format", "yaml"], "Error: Expected `--format` to be table or json"),
    ],
)
def test_bad_input_is_one_line_naming_the_fix(tmp_path, args, message):
    out = runner.invoke(app, ["tune", *args, "--store", str(tmp_path / "t.sqlite")])
    assert out.exit_code == 2
    assert out.output.strip().splitlines()[-1].startswith(message), out.output


def _search_finished(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return dict(
                conn.execute(
                    "SELECT trial_id, status FROM trials WHERE status != 'running'"
                ).fetchall()
            )
        finally:
            conn.close()
    except sqlite3.Error:
        return {}


@pytest.mark.slow
def test_sigkill_mid_run_loses_nothing_finished_and_a_rerun_completes(tmp_path):
    store = tmp_path / "t.sqlite"
    args = [
        *_weightlab(),
        "tune",
        "--trials",
        "40",
        "--batch",
        "4",
        "--epochs",
        "6",
        "--judge-seeds",
        "1",
        "--quiet",
        "--no-report",
        "--store",
        str(store),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while len(_search_finished(store)) < 8 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    before = _search_finished(store)
    assert 8 <= len(before) < 40 + 3, "killed mid-run"
    with SQLiteStore(store, create=False) as s:
        kept = {i: s.get(i) for i in before}
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    with SQLiteStore(store, create=False) as s:
        for tid, res in kept.items():  # every finished trial is still there, unchanged
            again = s.get(tid)
            assert again.status == res.status and again.val_metric == res.val_metric
        search = [r for r in s.results() if r.extra.get("tune_role") == "search"]
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal_path(store)))
    )
    (name,) = optuna.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).trials
    counted = [
        t for t in trials if t.state.is_finished() and not t.user_attrs.get("weightlab:interrupted")
    ]
    assert len(counted) == 40  # the budget counts what is done, the killed run's included
    assert len({r.config.trial_id for r in search}) == len(search)  # nothing trained twice
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in trials)
