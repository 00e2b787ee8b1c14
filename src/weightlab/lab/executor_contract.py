"""The contract suite every :class:`~weightlab.lab.executors.StackExecutor` passes.

As with the store contract (:mod:`weightlab.lab.store_contract`), the tests
ship with the library, so a new engine runs exactly the tests the serial and
process executors run. Subclass :class:`ExecutorContract` in a pytest file,
name the class ``Test...`` and say how to build your executor::

    # tests/test_my_executor.py
    from weightlab.lab.executor_contract import ExecutorContract

    class TestMyExecutor(ExecutorContract):
        def make_executor(self):
            return MyExecutor(workers=2)

What it checks: every stack's results equal the serial executor's (real
training on ``digits-lt``, to float tolerance) and come back for every
submitted stack; a stack that raises is reported through its future with its
exception type and message, and the other stacks still finish; ``submit``
before ``start`` is refused; ``shutdown(cancel=True)`` returns. Training
functions it submits are module-level, so process-based engines can pickle
them.

Example:
    >>> from weightlab.lab.executors import SerialExecutor
    >>> class TestSerial(ExecutorContract):
    ...     def make_executor(self):
    ...         return SerialExecutor()
    >>> TestSerial().test_a_failing_stack_is_reported_not_lost()
    >>> len(ExecutorContract.contract_tests())
    5
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from concurrent.futures import Future, wait
from typing import Any

from weightlab.lab.data import load_data
from weightlab.lab.executors import SerialExecutor, StackExecutor
from weightlab.lab.runner import EngineTrainer
from weightlab.lab.spec import StudySpec

__all__ = ["ExecutorContract", "echo_stack", "fail_on_seed", "tiny_stacks"]

#: The seed :func:`fail_on_seed` refuses.
FAILING_SEED = 13


def echo_stack(data: Any, configs: Sequence[Any]) -> list[Any]:
    """A training function that returns ``(data, config)`` per config (cheap, picklable)."""
    return [(data, c) for c in configs]


def fail_on_seed(data: Any, configs: Sequence[Any]) -> list[Any]:
    """Like :func:`echo_stack`, but raises ``ValueError`` for a stack holding seed 13."""
    if any(getattr(c, "seed", None) == FAILING_SEED for c in configs):
        raise ValueError(f"stack with seed {FAILING_SEED} refused")
    return echo_stack(data, configs)


def tiny_stacks() -> list[list[Any]]:
    """Two real stacks of the lab (mlp/sgd and mlp/adam, two seeds each, one epoch)."""
    spec = StudySpec(
        archs=("mlp",), optimizers=("sgd", "adam"), weightings=("none", "focal"), seeds=(0, 1),
        epochs=1, model_params={"mlp": {"hidden": 8}},
    )  # fmt: skip
    return list(spec.stacks())


def _results(future: Future[list[Any]]) -> list[Any]:
    return future.result(timeout=600)


class ExecutorContract(abc.ABC):
    """The executor contract as ``test_*`` methods; subclass it and define :meth:`make_executor`."""

    @abc.abstractmethod
    def make_executor(self) -> StackExecutor:
        """Return a new, unstarted executor to test."""

    @classmethod
    def contract_tests(cls) -> list[str]:
        """The names of the contract's test methods."""
        return [n for n in dir(cls) if n.startswith("test_")]

    def test_results_equal_the_serial_executors(self) -> None:
        """Real stacks give the serial executor's results, in order, to float tolerance."""
        data = load_data("digits-lt")
        train = EngineTrainer(diagnostics=False)
        stacks = tiny_stacks()
        with SerialExecutor() as serial:
            serial.start(train, data)
            expected = [_results(serial.submit(s)) for s in stacks]
        with self.make_executor() as ex:
            ex.start(train, data)
            got = [_results(f) for f in [ex.submit(s) for s in stacks]]
        assert len(got) == len(expected)
        for want_stack, got_stack in zip(expected, got, strict=True):
            assert [r.config.trial_id for r in got_stack] == [
                r.config.trial_id for r in want_stack
            ]
            for a, b in zip(want_stack, got_stack, strict=True):
                assert a.status == b.status
                assert set(a.metrics) == set(b.metrics)
                for name, value in a.metrics.items():
                    assert math.isclose(value, b.metrics[name], rel_tol=1e-4, abs_tol=1e-5), name
                for x, y in zip(a.train_loss, b.train_loss, strict=True):
                    assert math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6)

    def test_every_stack_comes_back(self) -> None:
        """Every submitted stack's future resolves to its own results."""
        stacks = [[_Cfg(10 * i + j) for j in range(i + 1)] for i in range(5)]
        with self.make_executor() as ex:
            ex.start(echo_stack, "data")
            futures = {ex.submit(s): s for s in stacks}
            done, not_done = wait(futures, timeout=600)
            assert not not_done
            for f in done:
                assert f.result() == [("data", c) for c in futures[f]]

    def test_a_failing_stack_is_reported_not_lost(self) -> None:
        """A stack that raises carries its exception; the others still finish."""
        with self.make_executor() as ex:
            ex.start(fail_on_seed, "data")
            good = ex.submit([_Cfg(1), _Cfg(2)])
            bad = ex.submit([_Cfg(3), _Cfg(FAILING_SEED)])
            after = ex.submit([_Cfg(4)])
            wait([good, bad, after], timeout=600)
            err = bad.exception()
            assert isinstance(err, ValueError), err
            assert str(err) == f"stack with seed {FAILING_SEED} refused"
            assert good.result() == [("data", _Cfg(1)), ("data", _Cfg(2))]
            assert after.result() == [("data", _Cfg(4))]

    def test_submit_before_start_is_refused(self) -> None:
        """``submit`` before ``start`` raises ``RuntimeError`` naming ``start``."""
        ex = self.make_executor()
        try:
            ex.submit([_Cfg(0)])
        except RuntimeError as err:
            assert "start" in str(err)
        else:  # pragma: no cover - the contract is broken
            raise AssertionError("submit() before start() was accepted")
        finally:
            ex.shutdown()

    def test_capacity_is_a_positive_integer_and_cancel_returns(self) -> None:
        """``capacity`` >= 1; ``shutdown(cancel=True)`` leaves no future pending."""
        ex = self.make_executor()
        assert isinstance(ex.capacity, int) and ex.capacity >= 1
        ex.start(echo_stack, "data")
        futures = [ex.submit([_Cfg(i)]) for i in range(3)]
        ex.shutdown(cancel=True)
        for f in futures:  # each is finished or cancelled, none left hanging
            assert f.done()


class _Cfg:
    """A picklable stand-in config with a seed (equality by seed)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Cfg) and other.seed == self.seed

    def __hash__(self) -> int:
        return hash(self.seed)

    def __repr__(self) -> str:
        return f"_Cfg({self.seed})"
