"""`weightlab study` when the world misbehaves: a full disk, a read-only or vanished store,
Ctrl-C, and two runs on one store. Each prints one line and leaves the store consistent."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from weightlab.lab.store_sqlite import SQLiteStore
from weightlab.lab.study import StudySpec

#: A study of several stacks that takes a few seconds to train.
SPEC = {
    "archs": ["mlp"], "optimizers": ["sgd", "adam", "adamw", "rmsprop"],
    "weightings": ["none", "balanced", "focal"], "seeds": [0, 1], "epochs": 4, "lr": 0.05,
    "lrs": {},  # as --lr gives it: one rate, no grid (the preset's patience stays)
}  # fmt: skip
ARGS = [
    "--archs", "mlp", "--optimizers", "sgd,adam,adamw,rmsprop", "--weightings",
    "none,balanced,focal", "--seeds", "0,1", "--epochs", "4", "--lr", "0.05", "--quiet",
    "--no-report", "--no-diagnostics",
]  # fmt: skip
TOTAL = StudySpec.preset("quick", **SPEC).num_trials


def _weightlab() -> list[str]:
    exe = Path(sys.executable).with_name("weightlab")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from weightlab.cli import main; main()"]  # noqa: E501


def _finished(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute(
                "SELECT COUNT(*) FROM trials WHERE status != 'running'").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _leases(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0])
    finally:
        conn.close()


def _start_and_wait_for_a_trial(cmd: list[str], store: Path, **kw: object) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if _finished(store) > 0:
            return proc
        if proc.poll() is not None:
            pytest.fail(f"study ended before the fault: {proc.communicate()[1]!r}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no trial finished within 120 s")


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.slow
def test_ctrl_c_prints_one_line_and_a_rerun_resumes(tmp_path: Path) -> None:
    store = tmp_path / "int.sqlite"
    cmd = [*_weightlab(), "study", *ARGS, "--store", str(store)]
    proc = _start_and_wait_for_a_trial(cmd, store)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    stored = _finished(store)
    assert 0 < stored < TOTAL, "interrupted after the study had finished; make it longer"
    held = "1 trial is" if stored == 1 else f"{stored} trials are"
    assert _one_line(err) == (
        f"Interrupted: {held} safely stored in {store}; rerun the same command to resume."
    )
    assert _leases(store) == 0  # the run gave its claims up
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{TOTAL - stored} trials trained, {stored} found in the store" in rerun.stderr


def _limit_file_size() -> None:
    limit = 1 << 20  # 1 MiB: the store fills up after a few trials
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.slow
def test_a_full_disk_prints_one_line_keeps_the_store_and_a_rerun_resumes(tmp_path: Path) -> None:
    store = tmp_path / "full.sqlite"
    cmd = [*_weightlab(), "study", *ARGS, "--store", str(store)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         preexec_fn=_limit_file_size)  # fmt: skip
    assert run.returncode == 1, run.stderr
    stored = _finished(store)
    assert 0 < stored < TOTAL
    line = _one_line(run.stderr)
    free = shutil.disk_usage(tmp_path).free / 2**20
    assert line.startswith(f"Error: could not write to the store {store} (")
    held = "1 trial is" if stored == 1 else f"{stored} trials are"
    assert f"). {held} safely stored in {store}; " in line
    assert line.endswith(f"MiB free on {tmp_path}; free some space and rerun the same "
                         "command to resume.")  # fmt: skip
    assert abs(float(line.split("; ")[1].split(" MiB")[0]) - free) < 1024
    with SQLiteStore(store, create=False) as s:
        assert len(s.statuses()) == stored and not s.running_ids() & s.finished_ids()
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{TOTAL - stored} trials trained, {stored} found in the store" in rerun.stderr


@pytest.mark.slow
def test_a_store_folder_that_vanishes_mid_study_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    store = folder / "s.sqlite"
    proc = _start_and_wait_for_a_trial([*_weightlab(), "study", *ARGS, "--store", str(store)],
                                       store)  # fmt: skip
    shutil.rmtree(folder)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert _one_line(err) == (
        f"Error: the store {store} was deleted (or its folder removed) while the study ran; "
        "the trials it held went with it. Rerun the same command to start the study again."
    )


@pytest.fixture
def read_only_mount(tmp_path: Path):
    """A folder and a read-only bind mount of it (root only; CI runs as root)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a read-only bind mount needs root and mount(8)")
    src, mnt = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    mnt.mkdir()
    bind = subprocess.run(["mount", "--bind", str(src), str(mnt)], capture_output=True, text=True)
    if bind.returncode != 0:
        pytest.skip(f"mount --bind refused here: {bind.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], check=True)
        yield src, mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.slow
def test_a_read_only_store_is_one_line_and_stays_readable(read_only_mount) -> None:
    src, mnt = read_only_mount
    small = ["--archs", "mlp", "--optimizers", "sgd", "--weightings", "none", "--epochs", "1",
             "--lr", "0.05", "--quiet", "--no-report", "--no-diagnostics"]  # fmt: skip
    first = subprocess.run([*_weightlab(), "study", *small, "--seeds", "0", "--store",
                            str(src / "s.sqlite")], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    store = mnt / "s.sqlite"  # the same file, on a read-only filesystem
    run = subprocess.run([*_weightlab(), "study", *small, "--seeds", "0,1", "--store", str(store)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert _one_line(run.stderr) == (
        f"Error: could not write to the store {store} (attempt to write a readonly database). "
        f"1 trial is safely stored in {store}; make it writable (its permissions, or a "
        "filesystem mounted read-only) and rerun the same command to resume."
    )
    read = subprocess.run([*_weightlab(), "results", str(store), "--format", "csv"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert read.returncode == 0, read.stderr
    assert read.stdout.splitlines()[1].startswith("digits-lt,mlp,sgd,1,none,")


@pytest.mark.slow
def test_two_runs_on_one_store_share_the_work(tmp_path: Path) -> None:
    store = tmp_path / "shared.sqlite"
    SQLiteStore(store).close()  # both start on an existing file
    longer = [*ARGS[: ARGS.index("--epochs")], "--epochs", "12", "--lr", "0.05", "--quiet",
              "--no-report", "--no-diagnostics"]  # fmt: skip
    spec = StudySpec.preset("quick", **{**SPEC, "epochs": 12})
    cmd = [*_weightlab(), "study", *longer, "--store", str(store)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    trained = []
    for _, err in outs:
        line = next(ln for ln in err.splitlines() if "trials trained" in ln)
        trained.append(int(line.split(" trials trained")[0]))
    assert sum(trained) == spec.num_trials, outs  # every trial trained once, by one of them
    assert min(trained) > 0, f"one run did all the work ({trained}): make the study longer"
    with SQLiteStore(store, create=False) as s:
        assert s.statuses() == {c.trial_id: "done" for c in spec.trials()}
        assert s.running_ids() == set()
    assert _leases(store) == 0
    for out, _ in outs:  # each prints the whole study's summary
        assert out.count("mlp") >= 1 and "rmsprop" in out

