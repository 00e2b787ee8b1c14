"""The stack executors pass the executor contract; the runner takes any of them."""

from __future__ import annotations

import pytest

from weightlab.errors import InvalidValueError
from weightlab.lab.executor_contract import ExecutorContract
from weightlab.lab.executors import (
    ProcessExecutor,
    SerialExecutor,
    check_workers,
    make_executor,
    threads_per_worker,
)
from weightlab.lab.spec import StudySpec
from weightlab.lab.store import MemoryStore
from weightlab.lab.study import run_study


class TestSerialExecutor(ExecutorContract):
    def make_executor(self):
        return SerialExecutor()


@pytest.mark.slow
class TestProcessExecutor(ExecutorContract):
    def make_executor(self):
        return ProcessExecutor(workers=2)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_workers_is_checked_in_one_place(bad):
    message = f"Expected `workers` to be an integer >= 1, but got {bad!r}. Use 1 or more."
    for call in (check_workers, threads_per_worker, lambda w: make_executor("serial", w),
                 ProcessExecutor, SerialExecutor):  # fmt: skip
        with pytest.raises(InvalidValueError) as info:
            call(bad)
        assert str(info.value) == message


def test_unknown_executor_names_the_known_ones():
    with pytest.raises(InvalidValueError) as info:
        make_executor("dask")
    assert str(info.value) == (
        "Expected `executor` to be one of 'serial', 'process', 'ray', but got 'dask'. Pick one."
    )


def test_thread_policy_shares_the_cores():
    import os

    cores = os.cpu_count() or 1
    assert threads_per_worker(1) == cores
    assert threads_per_worker(cores) == 1
    assert threads_per_worker(cores * 4) == 1


class _CountingExecutor(SerialExecutor):
    """A serial executor that records what it was given (the runner must not care which it has)."""

    def __init__(self):
        super().__init__()
        self.stacks = []
        self.started = self.stopped = 0

    def start(self, train, data):
        self.started += 1
        super().start(train, data)

    def submit(self, configs):
        self.stacks.append([c.trial_id for c in configs])
        return super().submit(configs)

    def shutdown(self, *, cancel=False):
        self.stopped += 1


def test_the_runner_uses_the_executor_it_is_given():
    spec = StudySpec(archs=["mlp"], optimizers=["sgd", "adam"], weightings=["none"], seeds=[0],
                     epochs=1, model_params={"mlp": {"hidden": 8}})  # fmt: skip
    ex = _CountingExecutor()
    store = MemoryStore()
    out = run_study(spec, store, executor=ex, diagnostics=False)
    assert out.ran == 2 and (ex.started, ex.stopped) == (1, 1)
    assert ex.stacks == [[c.trial_id] for c in spec.trials()]
    assert store.statuses() == {c.trial_id: "done" for c in spec.trials()}
