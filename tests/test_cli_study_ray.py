"""`weightlab study --executor ray`: the flags, one clear line for each bad input, a driver
killed with SIGKILL or interrupted with Ctrl-C that a rerun resumes, and a real two-node Ray
cluster on 127.0.0.1 (``ray.cluster_utils.Cluster``) whose two nodes both train stacks and give
the serial executor's answers, in this process and through ``--address``."""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from weightlab.cli import app
from weightlab.lab.executor_ray import RayExecutor
from weightlab.lab.runner import EngineTrainer
from weightlab.lab.spec import StudySpec
from weightlab.lab.store import MemoryStore
from weightlab.lab.store_sqlite import SQLiteStore
from weightlab.lab.study import run_study

runner = CliRunner()

#: Ray binds 127.0.0.1 only (tests talk to loopback only).
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

ONE = ["study", "--archs", "mlp", "--optimizers", "sgd", "--weightings", "none", "--seeds", "0",
       "--epochs", "1", "--quiet", "--no-report", "--no-diagnostics"]  # fmt: skip
#: Eight stacks of three trials (about 20 s to train on two cores).
SPEC = {"archs": ["mlp"], "optimizers": ["sgd", "adam", "adamw", "rmsprop"],
        "weightings": ["none", "balanced", "focal"], "seeds": [0, 1], "epochs": 4,
        "lr": 0.05, "lrs": {}}  # fmt: skip
ARGS = ["--archs", "mlp", "--optimizers", "sgd,adam,adamw,rmsprop", "--weightings",
        "none,balanced,focal", "--seeds", "0,1", "--epochs", "4", "--lr", "0.05", "--quiet",
        "--no-report", "--no-diagnostics"]  # fmt: skip
TOTAL = StudySpec.preset("quick", **SPEC).num_trials


def fails(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FIX = ("Start the cluster (`ray start --head`, Ray's cluster launcher or KubeRay) and pass "
       "its head's address: auto on one of its nodes, HOST:PORT (port 6379 by default) or "
       "ray://HOST:10001.")  # fmt: skip
WHAT = "Error: Expected `--address` to be 'auto', HOST:PORT or ray://HOST:PORT of a running Ray "


# -- bad input: one line naming the flag and the fix, exit status 2, within seconds ---------


def test_an_unknown_executor_names_the_flag_and_the_choices(tmp_path):
    assert fails(*ONE, "--store", str(tmp_path / "s.sqlite"), "--executor", "dask") == (
        "Error: Expected `--executor` to be one of 'serial', 'process', 'ray', but got 'dask'. "
        "Pick one."
    )
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize(
    ("extra", "given"),
    [(["--executor", "process"], "--address auto with --executor process"),
     ([], "--address auto alone")],
)  # fmt: skip
def test_an_address_without_the_ray_executor_is_refused(tmp_path, extra, given):
    assert fails(*ONE, "--store", str(tmp_path / "s.sqlite"), *extra, "--address", "auto") == (
        f"Error: Expected `--address` to be given only with --executor ray, but got {given}. "
        "Add --executor ray, or drop --address."
    )


def test_an_address_nobody_answers_is_a_clear_error_within_seconds(tmp_path, monkeypatch):
    for key, value in LOOPBACK.items():
        monkeypatch.setenv(key, value)
    port = _closed_port()
    t = time.perf_counter()
    message = fails(*ONE, "--store", str(tmp_path / "s.sqlite"), "--executor", "ray",
                    "--address", f"127.0.0.1:{port}")  # fmt: skip
    assert time.perf_counter() - t < 10
    assert message == f"{WHAT}cluster, but got '127.0.0.1:{port}' (Connection refused). {FIX}"
    assert not (tmp_path / "s.sqlite").exists()  # refused before the store was opened


def test_auto_with_a_dead_ray_address_says_where_it_looked(tmp_path, monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    message = fails(*ONE, "--store", str(tmp_path / "s.sqlite"), "--executor", "ray",
                    "--address", "auto")  # fmt: skip
    assert message == (
        f"{WHAT}cluster, but got 'auto' (RAY_ADDRESS=127.0.0.1:{port}: Connection refused). {FIX}"
    )


def test_a_malformed_address_is_refused(tmp_path):
    message = fails(*ONE, "--store", str(tmp_path / "s.sqlite"), "--executor", "ray",
                    "--address", "head-node")  # fmt: skip
    assert message == f"{WHAT}cluster, but got 'head-node'. {FIX}"


def test_ray_client_without_its_extra_names_the_fix(tmp_path):
    import ray

    with socket.socket() as server:  # something answers, so Ray itself is asked
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        message = fails(*ONE, "--store", str(tmp_path / "s.sqlite"), "--executor", "ray",
                        "--address", f"ray://127.0.0.1:{port}")  # fmt: skip
    assert message == (
        f"Error: Expected `--address` to be reachable with the installed Ray, but got "
        f"'ray://127.0.0.1:{port}' (Ray Client, ray://, needs the ray[client] extra). Install it "
        "with pip install 'ray[client]', or run the study on a node of the cluster with "
        "--address auto."
    )
    assert not ray.is_initialized()


def test_the_ray_executor_without_ray_names_the_flag_and_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert fails(*ONE, "--store", str(tmp_path / "s.sqlite"), "--executor", "ray") == (
        "Error: --executor ray needs Ray, which is not installed. Install it with: "
        "pip install 'weightlab[ray]'"
    )


def test_the_help_states_the_executors_and_the_address_forms():
    out = runner.invoke(app, ["study", "--help"])
    assert out.exit_code == 0
    text = " ".join(out.stdout.replace("│", " ").split())
    for words in ("serial (this process), process (--workers spawned processes) or ray",
                  "pip install 'weightlab[ray]'", "Default: serial for --workers 1, process",
                  "auto (the cluster this machine is a node of, or RAY_ADDRESS), HOST:PORT",
                  "ray://HOST:PORT (Ray Client)", "Default: start a local Ray runtime",
                  "at most one per CPU of the cluster"):  # fmt: skip
        assert words in text, words


# -- the driver dies or is interrupted: the store keeps what was stored, a rerun resumes -----


def _weightlab() -> list[str]:
    exe = Path(sys.executable).with_name("weightlab")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from weightlab.cli import main; main()"]  # noqa: E501


def _rows(path: Path) -> dict[str, tuple[str, str]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT trial_id, status, result FROM trials WHERE status != 'running'").fetchall()
    finally:
        conn.close()
    return {tid: (status, result) for tid, status, result in rows}


def _finished(path: Path) -> int:
    try:
        return len(_rows(path)) if path.exists() else 0
    except sqlite3.Error:
        return 0


def _env() -> dict[str, str]:
    return {**os.environ, **LOOPBACK}


def _start(cmd: list[str], store: Path) -> subprocess.Popen:
    """Start the study in its own process group and wait until it has stored a trial."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if _finished(store) > 0:
            return proc
        if proc.poll() is not None:
            pytest.fail(f"study ended before the fault: {proc.communicate()[1]!r}")
        time.sleep(0.02)
    _kill_group(proc)
    pytest.fail("no trial finished within 180 s")


def _kill_group(proc: subprocess.Popen) -> None:
    """End what is left of the process group this test started (its Ray processes)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


@pytest.mark.slow
def test_a_driver_killed_with_sigkill_is_resumed_by_a_rerun(tmp_path):
    store = tmp_path / "k.sqlite"
    cmd = [*_weightlab(), "study", *ARGS, "--store", str(store), "--executor", "ray",
           "--workers", "2"]  # fmt: skip
    proc = _start(cmd, store)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _kill_group(proc)
    assert proc.returncode == -signal.SIGKILL
    before = _rows(store)
    assert 0 < len(before) < TOTAL, "killed after the study had finished; make it longer"
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    assert rerun.returncode == 0, rerun.stderr
    assert f"{TOTAL - len(before)} trials trained, {len(before)} found in the store" in (
        rerun.stderr
    )
    after = _rows(store)
    assert len(after) == TOTAL
    assert {tid: after[tid] for tid in before} == before  # finished rows untouched
    with SQLiteStore(store, create=False) as s:
        assert s.running_ids() == set()
        assert s.finished_ids() == {c.trial_id for c in StudySpec.preset("quick", **SPEC).trials()}


@pytest.mark.slow
def test_ctrl_c_stops_the_ray_study_promptly_with_one_line_and_a_rerun_resumes(tmp_path):
    store = tmp_path / "c.sqlite"
    cmd = [*_weightlab(), "study", *ARGS, "--store", str(store), "--executor", "ray",
           "--workers", "2"]  # fmt: skip
    proc = _start(cmd, store)
    try:
        t = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t
    finally:
        _kill_group(proc)
    assert proc.returncode == 130, err
    assert took < 20, f"Ctrl-C took {took:.1f} s"
    stored = _finished(store)
    assert 0 < stored < TOTAL, "interrupted after the study had finished; make it longer"
    held = "1 trial is" if stored == 1 else f"{stored} trials are"
    assert err.strip() == (
        f"Interrupted: {held} safely stored in {store}; rerun the same command to resume."
    )
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    assert rerun.returncode == 0, rerun.stderr
    assert f"{TOTAL - stored} trials trained, {stored} found in the store" in rerun.stderr


# -- a real cluster: two nodes on 127.0.0.1 ---------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """A two-node Ray cluster (one CPU each) on 127.0.0.1, shut down at the end of the module."""
    import ray
    from ray.cluster_utils import Cluster

    old = {k: os.environ.get(k) for k in LOOPBACK}
    os.environ.update(LOOPBACK)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": 100 * 2**20, "include_dashboard": False})  # fmt: skip
    try:
        c.add_node(num_cpus=1, object_store_memory=100 * 2**20)
        c.wait_for_nodes()
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass(frozen=True)
class NodeRecordingTrainer:
    """The engine, recording in each result the Ray node that trained it."""

    def __call__(self, data, configs):
        import ray

        node = ray.get_runtime_context().get_node_id()
        results = EngineTrainer(diagnostics=False)(data, configs)
        for r in results:
            r.extra["node"] = node
        return results


def _same_results(a, b):
    ra = {r.config.trial_id: r for r in a.results()}
    rb = {r.config.trial_id: r for r in b.results()}
    assert set(ra) == set(rb)
    for tid, x in ra.items():
        y = rb[tid]
        assert x.status == y.status == "done", tid
        for name, value in x.metrics.items():
            assert math.isclose(value, y.metrics[name], rel_tol=1e-4, abs_tol=1e-5), (tid, name)


SMALL = StudySpec(archs=("mlp",), optimizers=("sgd", "adam", "adamw", "rmsprop"),
                  weightings=("none", "focal"), seeds=(0,), epochs=2,
                  model_params={"mlp": {"hidden": 8}})  # fmt: skip


@pytest.fixture(scope="module")
def serial_store():
    store = MemoryStore()
    run_study(SMALL, store, diagnostics=False)
    return store


@pytest.mark.slow
def test_a_study_on_a_two_node_cluster_uses_both_nodes_and_gives_the_serial_answers(
    cluster, serial_store
):
    import ray

    store = MemoryStore()
    ex = RayExecutor(workers=2, address=cluster.address)
    out = run_study(SMALL, store, executor=ex, train_stack=NodeRecordingTrainer())
    assert (out.ran, out.failed) == (SMALL.num_trials, 0)
    assert (ex.capacity, ex.threads) == (2, 1)  # one CPU per node, one stack per node
    assert not ray.is_initialized()  # it joined the cluster, and left it at shutdown
    nodes = {r.extra["node"] for r in store.results()}
    alive = {n["NodeID"] for n in _alive_nodes(cluster)}
    assert len(alive) == 2 and nodes == alive
    _same_results(serial_store, store)


def _alive_nodes(cluster):
    import ray

    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    try:
        return [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_the_cli_joins_the_cluster_by_address_and_caps_its_workers(cluster, tmp_path):
    store = tmp_path / "cl.sqlite"
    args = ["study", "--archs", "mlp", "--optimizers", "sgd,adam,adamw,rmsprop",
            "--weightings", "none,focal", "--seeds", "0", "--epochs", "2", "--quiet",
            "--no-report", "--no-diagnostics", "--store", str(store), "--executor", "ray",
            "--address", cluster.address, "--workers", "3"]  # fmt: skip
    spec = StudySpec.preset("quick", archs=("mlp",), optimizers=("sgd", "adam", "adamw", "rmsprop"),
                            weightings=("none", "focal"), seeds=(0,), epochs=2)  # fmt: skip
    want = MemoryStore()
    run_study(spec, want, diagnostics=False)
    run = subprocess.run([*_weightlab(), *args], capture_output=True, text=True, timeout=300,
                         env=_env())  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert lines[0] == (
        "Warning: --workers 3 is more than the Ray cluster's 2 CPUs; training 2 stacks at once."
    )
    assert re.search(rf"{spec.num_trials} trials trained, 0 found in the store, 0 failed",
                     run.stderr)  # fmt: skip
    with SQLiteStore(store, create=False) as got:
        _same_results(want, got)
