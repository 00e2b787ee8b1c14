"""The Ray executor passes the executor contract on a local Ray runtime, gives a study the
serial executor's answers, survives killed workers (retried, or stored as failed), cancels
promptly, caps its capacity at the cluster's CPUs, and is refused cleanly without Ray.

One local Ray runtime (2 CPUs, no dashboard, a small object store, 127.0.0.1) serves the
whole module; the executors under test join it and leave it running."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import wait
from dataclasses import dataclass
from pathlib import Path

import pytest

from weightlab.errors import InvalidValueError
from weightlab.lab.executor_contract import ExecutorContract, echo_stack
from weightlab.lab.executor_ray import RayCapacityWarning, RayExecutor, ray_threads
from weightlab.lab.executors import make_executor
from weightlab.lab.runner import EngineTrainer
from weightlab.lab.spec import StudySpec
from weightlab.lab.store import MemoryStore
from weightlab.lab.study import run_study

#: Two stacks (mlp/sgd and mlp/adam) of four trials, one epoch each.
SMALL = StudySpec(archs=("mlp",), optimizers=("sgd", "adam"), weightings=("none", "focal"),
                  seeds=(0, 1), epochs=1, model_params={"mlp": {"hidden": 8}})  # fmt: skip


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray runtime for the module, bound to 127.0.0.1, shut down at the end."""
    import ray

    old = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    # the workers unpickle this module's training functions by value, not by importing it
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             object_store_memory=150 * 2**20, log_to_driver=False,
             logging_level="ERROR")  # fmt: skip
    try:
        yield ray
    finally:
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        if old is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = old


@pytest.mark.slow
@pytest.mark.usefixtures("ray_runtime")
class TestRayExecutor(ExecutorContract):
    def make_executor(self):
        return RayExecutor(workers=2)


def _same_results(a, b):
    """Two stores' results: the same trial ids, statuses and metrics to float tolerance."""
    ra = {r.config.trial_id: r for r in a.results()}
    rb = {r.config.trial_id: r for r in b.results()}
    assert set(ra) == set(rb)
    for tid, x in ra.items():
        y = rb[tid]
        assert (x.status, set(x.metrics)) == (y.status, set(y.metrics)), tid
        for name, value in x.metrics.items():
            assert math.isclose(value, y.metrics[name], rel_tol=1e-4, abs_tol=1e-5), (tid, name)


@pytest.mark.slow
def test_a_study_on_ray_stores_what_the_serial_executor_stores(ray_runtime):
    serial, on_ray = MemoryStore(), MemoryStore()
    run_study(SMALL, serial, diagnostics=False)
    out = run_study(SMALL, on_ray, executor=RayExecutor(workers=2), diagnostics=False)
    assert (out.ran, out.failed) == (SMALL.num_trials, 0)
    assert ray_runtime.is_initialized()  # an executor that joined a runtime leaves it running
    _same_results(serial, on_ray)


# -- what a task asks for ------------------------------------------------------------------


def report_resources(data, configs):
    """Each config's task: the CPUs Ray assigned it and torch's intra-op threads."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    return [(c, cpus, torch.get_num_threads()) for c in configs]


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "threads"), [(1, 2), (2, 1)])
def test_each_task_requests_the_cpus_it_trains_with(ray_runtime, workers, threads):
    assert ray_threads(workers, 2, 2) == threads
    with RayExecutor(workers=workers) as ex:
        ex.start(report_resources, None)
        assert (ex.capacity, ex.threads) == (workers, threads)
        assert ex.submit(["a"]).result(timeout=120) == [("a", float(threads), threads)]


@pytest.mark.slow
def test_more_workers_than_cpus_warns_once_and_trains_as_many_as_there_are(ray_runtime):
    ex = RayExecutor(workers=5)
    assert ex.capacity == 5  # before it connects it knows no better
    with pytest.warns(RayCapacityWarning) as record:
        ex.start(echo_stack, "d")
    try:
        assert [str(w.message) for w in record] == [
            "--workers 5 is more than the Ray cluster's 2 CPUs; training 2 stacks at once."
        ]
        assert (ex.capacity, ex.threads) == (2, 1)
        assert ex.submit([1]).result(timeout=120) == [("d", 1)]
    finally:
        ex.shutdown()


# -- faults: a worker killed mid-stack, a stack that keeps killing its worker ---------------


@dataclass(frozen=True)
class KillingTrainer:
    """The engine, but a stack whose first config has optimizer ``kill`` SIGKILLs its worker.

    ``times`` kills at most (-1: always); every attempt appends a line to ``log``.
    """

    log: str
    kill: str = "adam"
    times: int = 1

    def __call__(self, data, configs):
        opt = configs[0].optimizer
        with open(self.log, "a") as f:
            f.write(f"{opt}\n")
        if opt == self.kill:
            attempts = Path(self.log).read_text().split().count(opt)
            if self.times < 0 or attempts <= self.times:
                os.kill(os.getpid(), signal.SIGKILL)
        return EngineTrainer(diagnostics=False)(data, configs)


@pytest.mark.slow
def test_a_worker_killed_mid_stack_is_retried_and_no_trial_is_lost_or_repeated(
    ray_runtime, tmp_path
):
    log = tmp_path / "attempts.txt"
    store, serial = MemoryStore(), MemoryStore()
    seen = []
    out = run_study(SMALL, store, executor=RayExecutor(workers=2),
                    train_stack=KillingTrainer(str(log)),
                    progress=lambda p: seen.append(p.result))  # fmt: skip
    assert sorted(log.read_text().split()) == ["adam", "adam", "sgd"]  # killed once, retried
    assert (out.ran, out.failed) == (SMALL.num_trials, 0)
    stored = [r.config.trial_id for r in seen if r is not None]
    assert sorted(stored) == sorted(c.trial_id for c in SMALL.trials())  # each trial once
    run_study(SMALL, serial, diagnostics=False)
    _same_results(serial, store)


@pytest.mark.slow
def test_a_stack_that_keeps_killing_its_worker_is_stored_failed_and_the_study_goes_on(
    ray_runtime, tmp_path
):
    log = tmp_path / "attempts.txt"
    store = MemoryStore()
    out = run_study(SMALL, store, executor=RayExecutor(workers=2),
                    train_stack=KillingTrainer(str(log), times=-1))  # fmt: skip
    assert sorted(log.read_text().split()) == ["adam"] * 3 + ["sgd"]  # 1 + max_retries (2)
    assert (out.ran, out.failed) == (SMALL.num_trials, 4)
    by_opt = {}
    for r in store.results():
        by_opt.setdefault(r.config.optimizer, set()).add((r.status, r.reason))
    assert by_opt["sgd"] == {("done", "")}
    [(status, reason)] = by_opt["adam"]
    assert status == "failed"
    assert reason.startswith(
        "the Ray worker training this stack died on each of its 3 attempts (WorkerCrashedError: "
    )
    assert reason.endswith("; max_retries=2")


@pytest.mark.slow
def test_items_that_are_not_trials_get_the_crash_as_the_futures_exception(ray_runtime, tmp_path):
    import ray

    with RayExecutor(workers=1, max_retries=0) as ex:
        ex.start(kill_always, str(tmp_path / "n.txt"))
        err = ex.submit(["x"]).exception(timeout=120)
    assert isinstance(err, ray.exceptions.WorkerCrashedError), err
    assert "died on each of its 1 attempts" in " ".join(err.__notes__)
    assert (tmp_path / "n.txt").read_text() == "x"  # max_retries=0: tried once


def kill_always(path, configs):
    with open(path, "a") as f:
        f.write("x")
    os.kill(os.getpid(), signal.SIGKILL)


def sleepy(marker, configs):
    Path(marker, f"started-{configs[0]}").touch()
    time.sleep(120)
    return configs


@pytest.mark.slow
def test_shutdown_with_cancel_returns_promptly_and_frees_the_cpus(ray_runtime, tmp_path):
    ex = RayExecutor(workers=2)
    ex.start(sleepy, str(tmp_path))
    futures = [ex.submit([i]) for i in range(3)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("started-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(list(tmp_path.glob("started-*"))) == 2, "the tasks did not start"
    t = time.perf_counter()
    ex.shutdown(cancel=True)
    assert time.perf_counter() - t < 5
    assert all(f.cancelled() for f in futures)
    done, _ = wait(futures, timeout=1)  # waiters are told too
    assert len(done) == 3
    deadline = time.monotonic() + 30  # the killed workers give their CPUs back
    while ray_runtime.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_runtime.available_resources().get("CPU", 0) == 2


@pytest.mark.slow
def test_a_python_error_keeps_its_type_message_and_the_workers_traceback(ray_runtime):
    with RayExecutor(workers=1) as ex:
        ex.start(raise_key_error, None)
        err = ex.submit(["k"]).exception(timeout=120)
    assert type(err) is KeyError and err.args == ("no such key: k",)
    assert "raised in a Ray worker" in err.__notes__[0] and "raise_key_error" in err.__notes__[0]


def raise_key_error(data, configs):
    raise KeyError(f"no such key: {configs[0]}")


# -- without a runtime: options, bad input, Ray missing -------------------------------------


def test_make_executor_passes_the_ray_options_on():
    ex = make_executor("ray", 3, address="auto", max_retries=1)
    assert isinstance(ex, RayExecutor)
    assert (ex.capacity, ex.address, ex.max_retries) == (3, "auto", 1)


def test_ray_options_for_another_executor_are_refused():
    with pytest.raises(InvalidValueError) as info:
        make_executor("process", 2, address="auto")
    assert str(info.value) == (
        "Expected `address` to be given only to the 'ray' executor, but got address='auto' "
        "with the 'process' executor. Drop it, or use make_executor('ray', ...)."
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"address": ""}, "Expected `address` to be None, 'auto', 'HOST:PORT' or "
         "'ray://HOST:PORT', but got ''. Pass the Ray head's address, or None for a local "
         "runtime."),
        ({"max_retries": -1}, "Expected `max_retries` to be an integer >= 0, but got -1. "
         "Use 0 (no retry) or more; the default is 2."),
        ({"workers": 0}, "Expected `workers` to be an integer >= 1, but got 0. Use 1 or more."),
    ],
)  # fmt: skip
def test_bad_arguments_name_the_argument_and_the_fix(kwargs, message):
    with pytest.raises(InvalidValueError) as info:
        RayExecutor(**kwargs)
    assert str(info.value) == message


@pytest.mark.slow  # a subprocess
def test_without_ray_the_executor_is_one_error_naming_the_extra():
    code = textwrap.dedent("""
        import sys
        sys.modules["ray"] = None  # as if Ray were not installed
        import weightlab.lab.executors as ex
        from weightlab.lab.runner import run_study
        assert "ray" in ex.EXECUTORS and sys.modules["ray"] is None  # nothing imported it
        try:
            ex.make_executor("ray", 2)
        except ImportError as err:
            print(type(err).__name__, err)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == (
        "ImportError The ray executor needs Ray, which is not installed. Install it with: "
        "pip install 'weightlab[ray]'"
    )
